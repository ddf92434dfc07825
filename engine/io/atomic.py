"""Files that appear whole or not at all: written under a temporary name, renamed into place when complete.

Every file the engine commits (Parquet outputs, markers, stats, the report, resolved jobs, cached models) goes
through `AtomicFile`, so a reader never sees half a file and a killed writer leaves only a `*.tmp-*` name behind.
The temporary name sits beside the final one, or in `tmp_dir` when given: a unit puts all of its temporary files
in a folder of its own (`OUT/_tmp/<rel>/`), so the next run removes what a killed unit left without listing the
output's folders.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from engine.errors import OutputError
from engine.io.paths import filesystem, has_protocol

TMP_MARK = ".tmp-"


class AtomicFile:
    """An open file at `url` under a temporary name; `commit` renames it into place, `abort` removes it."""

    def __init__(
        self,
        url: str,
        mode: str = "wb",
        storage_options: dict[str, Any] | None = None,
        *,
        tmp_dir: str | None = None,
    ) -> None:
        self.url = url
        fs, path = filesystem(url, storage_options or {})
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        self._fs, self._path = fs, path
        self._tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        if tmp_dir is not None:
            folder = filesystem(tmp_dir, storage_options or {})[1].rstrip("/")
            fs.makedirs(folder, exist_ok=True)
            self._tmp = f"{folder}/{self._tmp.rsplit('/', 1)[-1]}"
        self.handle: IO[Any] = fs.open(self._tmp, mode)

    def commit(self) -> str:
        """Close the file and move it to its final name; its URL."""
        self.handle.close()
        self._fs.mv(self._tmp, self._path)
        return self.url

    def abort(self) -> None:
        """Close and remove the temporary file (the writer failed); never raises for storage errors."""
        try:
            self.handle.close()
            self._fs.rm(self._tmp)
        except OSError:
            pass


@contextmanager
def atomic_open(
    url: str, mode: str, storage_options: dict[str, Any] | None = None, *, tmp_dir: str | None = None
) -> Iterator[IO[Any]]:
    """`open` for writing whose file appears at `url` only when the block finishes without an exception."""
    file = AtomicFile(url, mode, storage_options, tmp_dir=tmp_dir)
    try:
        yield file.handle
    except BaseException:
        file.abort()
        raise
    file.commit()


def write_text(
    url: str, text: str, storage_options: dict[str, Any] | None = None, *, tmp_dir: str | None = None
) -> None:
    """Write `text` (UTF-8) at `url` atomically."""
    with atomic_open(url, "wb", storage_options, tmp_dir=tmp_dir) as handle:
        handle.write(text.encode("utf-8"))


def remove_temporary(tmp_dir: str, storage_options: dict[str, Any]) -> None:
    """Delete the temporary folder `tmp_dir` and whatever a killed writer left in it (one small listing)."""
    fs, path = filesystem(tmp_dir, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def check_writable(url: str, storage_options: dict[str, Any] | None = None) -> None:
    """Fail now, in one paragraph, if a run could not write under `url` (checked by writing and removing a probe).

    A local path is probed in its nearest existing folder (nothing is created); other storage at `url` itself.

    Raises:
        OutputError: the path lies under a file, its folder cannot be created or written, or storage refuses.
    """
    fix = "choose an output folder you can write to (output.path in the job, or --output PATH)"
    probe_name = f".corpus-engine-write-probe{TMP_MARK}{uuid.uuid4().hex[:8]}"
    if not has_protocol(url) or url.startswith("file://"):
        path = os.path.abspath(url.removeprefix("file://"))
        existing = path
        while not os.path.lexists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            msg = f"output path {url} cannot be written: {existing} is a file, not a folder; {fix}"
            raise OutputError(msg)
        probe = os.path.join(existing, probe_name)
        try:
            with open(probe, "xb"):
                pass
            os.remove(probe)
        except OSError as error:
            where = "" if existing == path else f" (the folder would be created in {existing})"
            msg = f"output path {url} cannot be written{where}: {error.strerror or error}; {fix}"
            raise OutputError(msg) from None
        return
    fs, root = filesystem(url, storage_options or {})
    probe = f"{root.rstrip('/')}/{probe_name}"
    try:
        fs.pipe_file(probe, b"")
        fs.rm(probe)
    except OSError as error:
        msg = f"output path {url} cannot be written: {type(error).__name__}: {error}; {fix}"
        raise OutputError(msg) from None
