"""Files that appear whole or not at all: write-once names on object stores, temporary name + rename on local disks.

Every file the engine commits (Parquet outputs, segment objects, markers, stats, the report, resolved jobs, cached
models) goes through `AtomicFile`, so a reader never sees half a file:

- On object stores (S3, GCS, Azure and every filesystem that is not a local disk) the file is written directly
  under its final name: a PUT or a multipart upload is atomic (readers see the whole object or nothing), so a
  temporary name would only add a COPY and a DELETE per file. A failed writer discards its upload; a retried task
  rewrites the same bytes under the same name.
- On local disks the file is written under a temporary name and renamed into place when complete, so a killed
  writer leaves only a `*.tmp-*` name behind. The temporary name sits beside the final one, or in `tmp_dir` when
  given: a unit puts all of its temporary files in a folder of its own (`OUT/_tmp/<rel>/`), so the next run removes
  what a killed unit left without listing the output's folders.

Either way, whoever commits a set of files writes its completion marker last.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import fsspec
from fsspec.spec import AbstractBufferedFile

from engine.errors import OutputError
from engine.io.paths import filesystem, has_protocol

TMP_MARK = ".tmp-"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """Whether `fs` is a local disk (where a rename is atomic and cheap), not an object store."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


class AtomicFile:
    """An open file that appears at `url` only on `commit`; `abort` leaves nothing behind.

    `writes_in_place` says which way it goes: True on object stores (the final name, one upload), False on local
    disks (a temporary name, renamed on commit).
    """

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
        self._fs, self._path = fs, path
        self.writes_in_place = not is_local(fs)
        if self.writes_in_place:
            self._tmp = path
            self.handle: IO[Any] = fs.open(path, mode)
            return
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        self._tmp = f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"
        if tmp_dir is not None:
            folder = filesystem(tmp_dir, storage_options or {})[1].rstrip("/")
            fs.makedirs(folder, exist_ok=True)
            self._tmp = f"{folder}/{self._tmp.rsplit('/', 1)[-1]}"
        self.handle = fs.open(self._tmp, mode)

    def commit(self) -> str:
        """Close the file (completing the upload, or renaming it into place); its URL."""
        self.handle.close()
        if not self.writes_in_place:
            self._fs.mv(self._tmp, self._path)
        return self.url

    def abort(self) -> None:
        """Drop what was written (the writer failed); never raises for storage errors."""
        try:
            if self.writes_in_place:
                _abandon(self.handle)
            else:
                self.handle.close()
            self._fs.rm(self._tmp)
        except (OSError, ValueError):
            pass


def _abandon(handle: IO[Any]) -> None:
    """Close an upload without completing it: an fsspec file would publish what it holds if simply closed."""
    discard = getattr(handle, "discard", None)
    if callable(discard):
        discard()  # s3fs: aborts the multipart upload
    if isinstance(handle, AbstractBufferedFile):
        handle.closed = True
    else:
        handle.close()


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
    write_bytes(url, text.encode("utf-8"), storage_options, tmp_dir=tmp_dir)


def write_bytes(
    url: str, data: bytes, storage_options: dict[str, Any] | None = None, *, tmp_dir: str | None = None
) -> None:
    """Write `data` at `url` atomically (one PUT on object stores)."""
    with atomic_open(url, "wb", storage_options, tmp_dir=tmp_dir) as handle:
        handle.write(data)


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
