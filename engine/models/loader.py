"""Cached fastText models: one loaded model per worker process, found by path, never pickled.

Steps hold a model *path* (a local file or any fsspec URL); they call `load_model(path)` inside
`__call__`, which loads the model the first time a process asks for it and returns the same object
afterwards (Ray reuses worker processes, so a model is loaded once per worker, not once per task).
A model given as a URL (`s3://bucket/quality.bin`, `memory://m.bin`) is copied once to a local cache
directory, because fastText only reads local files.

`check_model(path)` is what a step's `check()` calls at `validate` time: it checks the file's layout
(a truncated model can make fastText's C++ loader hang, crash or load silently), then loads the model in
a child process (so a corrupt file that still crashes fastText cannot take the driver down) and returns
its labels, or raises a `SpecError` naming the path and the reason. `load_model` makes the same layout
check before loading. Neither prints anything: `_FastText(model_path=...)` is used instead of
`fasttext.load_model`, which writes a warning to stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import sys
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from engine.batch import text_column
from engine.errors import SpecError
from engine.io.assets import current_version
from engine.io.atomic import atomic_open

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

LABEL_PREFIX = "__label__"
DEFAULT_LID_MODEL = "lid.176.ftz"
# First two int32 of every fastText model file (fastText's `FASTTEXT_FILEFORMAT_MAGIC_INT32`, version 12).
FASTTEXT_MAGIC = 793712314
FASTTEXT_VERSION = 12
CHECK_TIMEOUT_SECONDS = 600
DEFAULT_MAX_CHARS = 100_000

_lock = threading.Lock()
_models: dict[tuple[str, int, int], _FastText] = {}
_local_paths: dict[str, str] = {}
_labels: dict[tuple[str, int, int], tuple[str, ...]] = {}
_retired: list[_FastText] = []  # see clear_cache


def default_lid_model() -> str:
    """Path of the language-identification model shipped in the package (`engine/models/lid.176.ftz`)."""
    ref = resources.files("engine").joinpath("models", DEFAULT_LID_MODEL)
    if isinstance(ref, Path):
        return str(ref)
    # Installed as a zip: extract once into the model cache.
    target = cache_dir() / DEFAULT_LID_MODEL
    if not target.exists():
        with resources.as_file(ref) as extracted:
            _fetch(str(extracted), target)
    return str(target)


def cache_dir() -> Path:
    """Where models given as URLs are copied (`$XDG_CACHE_HOME/corpus-engine/models`, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "corpus-engine" / "models"


def import_fasttext() -> Any:
    """The `fasttext` module, or an ImportError saying which package provides it."""
    try:
        import fasttext
    except ImportError as error:
        msg = (
            "fastText is not installed; install `fasttext-numpy2-wheel` (the only fastText build whose "
            "predict works with numpy 2): pip install fasttext-numpy2-wheel"
        )
        raise ImportError(msg) from error
    return fasttext


def strip_label(label: str) -> str:
    """A fastText label without its `__label__` prefix (`__label__en` -> `en`)."""
    return label.removeprefix(LABEL_PREFIX)


def local_model_path(model: str, *, directory: Path | None = None) -> str:
    """A local file holding `model`: the path itself, or a cached copy of an fsspec URL.

    The copy is named by a hash of the URL, its size and its version (etag or mtime), so a changed
    remote model is fetched again and concurrent workers on one machine share one copy (written to a
    temporary name, then renamed).

    Raises:
        SpecError: the URL cannot be read (naming it and the reason).
    """
    from fsspec.core import split_protocol

    protocol, _ = split_protocol(model)
    if protocol in (None, "file", "local"):
        return os.path.abspath(model.removeprefix("file://"))
    try:
        size, version = current_version(model)  # asked once per unit: a model replaced in place is fetched again
    except (OSError, ValueError) as error:
        msg = f"fastText model {model!r} cannot be read: {type(error).__name__}: {error}"
        raise SpecError(msg) from None
    key = f"{model}|{size}|{version}"
    if key in _local_paths:
        return _local_paths[key]
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = (directory or cache_dir()) / f"{digest}-{model.rstrip('/').rsplit('/', 1)[-1]}"
    if not target.exists():
        _fetch(model, target)
    _local_paths[key] = str(target)
    return str(target)


def _fetch(url: str, target: Path) -> None:
    """Copy `url` to the local file `target`, whole or not at all (workers on one machine may race)."""
    import fsspec

    try:
        with fsspec.open(url, "rb") as source, atomic_open(str(target), "wb") as sink:
            while chunk := source.read(1 << 24):
                sink.write(chunk)
    except (OSError, ValueError) as error:
        msg = f"fastText model {url!r} cannot be copied to {target}: {type(error).__name__}: {error}"
        raise SpecError(msg) from None


def _identity(path: str) -> tuple[str, int, int]:
    """The cache key of a local model file: path, size, mtime (a replaced file is loaded again)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        msg = f"fastText model {path!r} does not exist; check the `model:` path (or omit it for the default)"
        raise SpecError(msg) from None
    except OSError as error:
        msg = f"fastText model {path!r} cannot be read: {error}"
        raise SpecError(msg) from None
    return (path, stat.st_size, stat.st_mtime_ns)


def _check_header(path: str, size: int) -> None:
    """Reject files that are not complete fastText models before fastText's C++ loader sees them.

    fastText's loader trusts the file: a truncated model can make it hang, crash, or load silently
    with missing weights. So the file's layout is walked here (header, arguments, dictionary, matrices,
    as fastText's `FastText::saveModel` writes them) and its expected size compared with the real one.
    """
    if size < 8:
        msg = f"fastText model {path!r} is not a fastText model: the file has {size} bytes"
        raise SpecError(msg)
    with open(path, "rb") as handle:
        magic, version = struct.unpack("<ii", handle.read(8))
        if magic != FASTTEXT_MAGIC:
            msg = (
                f"fastText model {path!r} is not a fastText model (its first bytes are not fastText's file "
                "signature); give a `.bin` or `.ftz` written by fastText's save_model"
            )
            raise SpecError(msg)
        if version > FASTTEXT_VERSION:
            msg = f"fastText model {path!r} has file-format version {version}, newer than this fastText reads"
            raise SpecError(msg)
        try:
            expected = _expected_size(handle)
        except (struct.error, ValueError) as error:
            msg = f"fastText model {path!r} is truncated or corrupt ({size} bytes; {error})"
            raise SpecError(msg) from None
    if expected != size:
        msg = (
            f"fastText model {path!r} is truncated or corrupt: its header describes {expected} bytes, "
            f"the file has {size}; copy the model again"
        )
        raise SpecError(msg)


def _expected_size(handle: BinaryIO) -> int:
    """Walk a fastText model file (positioned after magic and version); the size its layout implies."""

    def read(fmt: str) -> tuple[Any, ...]:
        width = struct.calcsize(fmt)
        data = handle.read(width)
        if len(data) != width:
            msg = f"the file ends before byte {handle.tell() + width}"
            raise ValueError(msg)
        return struct.unpack(fmt, data)

    read("<12id")  # Args: dim ws epoch minCount neg wordNgrams loss model bucket minn maxn lrUpdateRate, t
    size, _nwords, _nlabels, _ntokens, prune_size = read("<iiiqq")
    if size < 0 or prune_size < -1:
        msg = f"negative dictionary size {size}"
        raise ValueError(msg)
    _skip_dictionary(handle, size)
    position = handle.tell() + 8 * max(prune_size, 0)
    handle.seek(position)
    (is_quantized,) = read("<?")
    position = _skip_matrix(handle, read, quantized=is_quantized)
    handle.seek(position)
    (is_quantized_output,) = read("<?")
    return _skip_matrix(handle, read, quantized=is_quantized_output)


def _skip_dictionary(handle: BinaryIO, entries: int) -> None:
    """Move past `entries` dictionary entries: NUL-terminated word, int64 count, int8 type."""
    start = handle.tell()
    buffer = b""
    offset = 0
    for _ in range(entries):
        while True:
            end = buffer.find(b"\0", offset)
            if end != -1 and end + 10 <= len(buffer):
                break
            more = handle.read(1 << 20)
            if not more:
                msg = "file ends inside the dictionary"
                raise ValueError(msg)
            buffer = buffer[offset:] + more
            start += offset
            offset = 0
        offset = end + 10
    handle.seek(start + offset)


def _skip_matrix(handle: BinaryIO, read: Any, *, quantized: bool) -> int:
    """Offset just after a dense or product-quantized matrix that starts at the current position."""
    if not quantized:
        rows, cols = read("<qq")
        if rows < 0 or cols < 0:
            msg = f"negative matrix shape {rows}x{cols}"
            raise ValueError(msg)
        return int(handle.tell() + 4 * rows * cols)
    has_norm, rows, _cols, code_size = read("<?qqi")
    handle.seek(handle.tell() + code_size)
    position = _skip_quantizer(handle, read)
    if has_norm:
        handle.seek(position + rows)
        position = _skip_quantizer(handle, read)
    return position


def _skip_quantizer(handle: BinaryIO, read: Any) -> int:
    """Offset after a ProductQuantizer: dim, nsubq, dsub, lastdsub (int32), then dim x 256 float32 centroids."""
    dim, _nsubq, _dsub, _last = read("<iiii")
    return int(handle.tell() + 4 * dim * 256)


def load_model(model: str) -> _FastText:
    """The fastText model at `model` (path or fsspec URL), loaded once per process and reused.

    Raises:
        SpecError: the file is missing, not a fastText model, or fastText cannot load it.
    """
    path = local_model_path(model)
    key = _identity(path)
    found = _models.get(key)
    if found is not None:
        return found
    with _lock:
        found = _models.get(key)
        if found is None:
            _check_header(path, key[1])
            found = _load_unchecked(path)
            _models[key] = found
    return found


def _load_unchecked(path: str) -> _FastText:
    import_fasttext()
    from fasttext.FastText import _FastText

    try:
        # `_FastText(model_path=...)` rather than `fasttext.load_model`, which prints a warning to stderr.
        return _FastText(model_path=path)
    except (ValueError, MemoryError, RuntimeError) as error:
        msg = f"fastText model {path!r} cannot be loaded: {error or type(error).__name__}"
        raise SpecError(msg) from None


def model_labels(model: str) -> tuple[str, ...]:
    """Labels of the (loaded) model at `model`, without the `__label__` prefix."""
    return tuple(strip_label(label) for label in load_model(model).labels)


_CHILD = """
import json, sys
from fasttext.FastText import _FastText
model = _FastText(model_path=sys.argv[1])
import fasttext
supervised = model.f.getArgs().model == fasttext.FastText.model_name.supervised
print(json.dumps({"labels": list(model.labels) if supervised else [], "supervised": supervised}))
"""


def check_model(model: str) -> tuple[str, ...]:
    """Check at `validate` time that `model` loads, without risking the current process; its labels.

    The model is loaded in a child Python process: a truncated or corrupt file can make fastText's C++
    loader crash (segfault) rather than raise. Results are cached per file identity.

    Raises:
        SpecError: naming the path and the reason (missing, not a fastText model, crashed or failed to load).
    """
    path = local_model_path(model)
    key = _identity(path)
    if key in _labels:
        return _labels[key]
    _check_header(path, key[1])
    import_fasttext()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, path],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        msg = f"fastText model {model!r} did not load within {CHECK_TIMEOUT_SECONDS}s; is the file corrupt?"
        raise SpecError(msg) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        if done.returncode < 0:
            reason = f"fastText crashed loading it (signal {-done.returncode}): the file is corrupt or truncated"
        else:
            reason = f"fastText cannot load it: {last or 'exit code ' + str(done.returncode)}"
        msg = f"fastText model {model!r} ({path}) is unusable: {reason}"
        raise SpecError(msg)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    labels = tuple(strip_label(label) for label in report["labels"])
    if not report["supervised"] or not labels:
        msg = f"fastText model {model!r} has no labels: it is not a supervised (classification) model"
        raise SpecError(msg)
    _labels[key] = labels
    return labels


def clear_cache() -> None:
    """Forget every loaded model and resolved URL (tests; a long-lived process that swaps models).

    The forgotten models are kept alive, never freed: with fasttext-numpy2-wheel 0.9.2, freeing a
    quantized model (such as lid.176.ftz) makes later fastText training in the same process fail with
    "Encountered NaN." (seen in 5 of 5 tries), so a process holds on to every model it loaded.
    """
    with _lock:
        _retired.extend(_models.values())
        _models.clear()
        _local_paths.clear()
        _labels.clear()


def prepare_texts(batch: pa.Table, max_chars: int | None) -> tuple[list[str], npt.NDArray[np.bool_]]:
    """Texts as fastText predicts them, and which rows are blank (null, empty or whitespace only).

    Newlines become spaces (fastText reads one line per document), as in datatrove's and DCLM's
    pipelines; texts longer than `max_chars` characters are cut to their first `max_chars` (bounded
    cost per document). Vectorised with pyarrow; one `to_pylist` for fastText's list API. Training
    (`engine.models.training`) prepares its examples the same way.
    """
    column = text_column(batch)
    if max_chars is not None:
        column = pc.utf8_slice_codeunits(column, 0, max_chars)
    blank = pc.fill_null(pc.or_(pc.equal(pc.utf8_length(column), 0), pc.utf8_is_space(column)), True)
    prepared = pc.fill_null(pc.replace_substring(column, "\n", " "), "")
    return prepared.to_pylist(), np.asarray(blank.to_numpy(zero_copy_only=False), dtype=bool)
