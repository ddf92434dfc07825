"""A local filesystem that counts what the same calls would cost on S3: requests, objects and bytes.

Registered with fsspec under the protocol `count://` (`count:///tmp/x` is the local path `/tmp/x`), so the engine
runs unchanged against it: give the job `output.path: count:///tmp/out`. Every process that imports this module
(the driver and, through the measuring task wrapper of `bench_scale.py`, every Ray worker) keeps its own counters;
`snapshot()` before and after a task gives what that task did.

The request model follows s3fs's defaults (50 MiB blocks, readahead cache):

- open for reading: 1 HEAD (the size), then 1 GET per block fetched (`_fetch_range`);
- a file written and closed: 1 PUT if it is smaller than a block, else a multipart upload (create, one request
  per 50 MiB part, complete);
- `info` / `exists` / `isfile`: 1 HEAD, plus 1 LIST when the path is not a file (s3fs then lists the prefix);
- `ls` / `find` / `glob`: 1 LIST per 1,000 entries (a recursive listing is one paginated call on S3);
- `mv`: COPY + DELETE (no rename on S3); `rm` of n files: LIST + ceil(n / 1000) bulk DELETEs when recursive,
  ceil(n / 1000) bulk DELETEs for a list of keys, else one DELETE; `makedirs`: nothing (S3 has no directories).

Across processes (a whole job on a local Ray, `bench_rebuild.py`): give Ray the worker setup hook
`storage_counter.report_to_folder` and `STORAGE_COUNTER_DIR` in the workers' environment; every worker then
writes its cumulative counters and its process CPU seconds to `<dir>/<pid>.json` every `FLUSH_SECONDS`, and
`folder_totals(dir)` sums them (take it before and after a run, `FLUSH_SECONDS` after the last task).

Counters are also kept per *area* (the folder a path belongs to: `work/bands`, `signatures`, `kept`, ...), so a
report can say which phase wrote how many objects.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

PROTOCOL = "count"
BLOCK = 50 * 2**20  # s3fs's default block size, for reads (readahead) and multipart writes
LIST_PAGE = 1000

COUNTS: Counter[str] = Counter()
"""This process's counters: `<kind>` totals and `<kind>@<area>` per area (kinds: GET, PUT, HEAD, LIST, COPY,
DELETE, files_written, bytes_written, bytes_read)."""

REQUEST_KINDS = ("GET", "PUT", "HEAD", "LIST", "COPY", "DELETE")

_AREA = re.compile(
    r"/_dedup/[^/]+/(?:work/(?P<work>[^/]+)|shuffle/[^/]+/(?P<shuffle>[^/]+)|state/(?P<state>[^/]+)|(?P<sig>signatures))"
    r"|/(?P<top>kept|rejected|_stage|_units)/"
)


def area_of(path: str) -> str:
    """The folder `path` belongs to, for per-area counts (`work/bands` of the design before segments,
    `shuffle/bands`, `state/fates`, `signatures`, `kept`, `other`)."""
    found = _AREA.search(path)
    if found is None:
        return "other"
    for kind in ("work", "shuffle", "state"):
        if found[kind]:
            return f"{kind}/{found[kind].removesuffix('.json')}"
    return "signatures" if found["sig"] else str(found["top"])


def count(kind: str, path: str, n: int = 1) -> None:
    if n:
        COUNTS[kind] += n
        COUNTS[f"{kind}@{area_of(path)}"] += n


def snapshot() -> dict[str, int]:
    return dict(COUNTS)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What happened between two snapshots (non-zero entries only)."""
    out = {k: v - before.get(k, 0) for k, v in after.items()}
    return {k: v for k, v in out.items() if v}


DIR_ENV = "STORAGE_COUNTER_DIR"
FLUSH_SECONDS = 0.25
CPU_SECONDS = "cpu_seconds"
"""The key of a process's CPU seconds (user + system, all its threads) in its report file."""


def report_to_folder() -> None:
    """A Ray worker setup hook: report this process's counters and CPU to `$STORAGE_COUNTER_DIR/<pid>.json`."""
    folder = os.environ.get(DIR_ENV)
    if folder:
        threading.Thread(target=_report_loop, args=(Path(folder),), daemon=True, name="storage-counter").start()


def _report_loop(folder: Path) -> None:
    target = folder / f"{os.getpid()}.json"
    scratch = folder / f".{os.getpid()}.tmp"
    while True:
        try:
            counts: dict[str, float] = dict(COUNTS)
        except RuntimeError:  # changed size while copied: try again at once
            continue
        counts[CPU_SECONDS] = time.process_time()
        scratch.write_text(json.dumps(counts))
        scratch.replace(target)
        time.sleep(FLUSH_SECONDS)


def folder_totals(folder: Path) -> Counter[str]:
    """The sum of every reporting process's counters and CPU seconds (cumulative since each process started)."""
    total: Counter[str] = Counter()
    for path in folder.glob("*.json"):
        total.update(json.loads(path.read_text()))
    return total


def add(total: Counter[str], part: dict[str, int]) -> None:
    total.update(part)


def requests(counts: dict[str, int]) -> int:
    return sum(counts.get(kind, 0) for kind in REQUEST_KINDS)


class CountingFile(AbstractBufferedFile):  # type: ignore[misc]
    """A buffered file over a local file, counting GETs and PUTs the way s3fs would issue them."""

    def __init__(self, fs: CountingFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self._local: Any = None
        self._parts = 0
        super().__init__(fs, path, mode, block_size=kwargs.pop("block_size", None) or BLOCK, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        if self._local is None:
            self._local = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        self._local.seek(start)
        data: bytes = self._local.read(end - start)
        count("GET", self.path)
        count("bytes_read", self.path, len(data))
        return data

    def _initiate_upload(self) -> None:
        self._local = open(self.path, "wb")  # noqa: SIM115 - closed on the final chunk

    def _upload_chunk(self, final: bool = False) -> bool:  # noqa: FBT001, FBT002 - fsspec's signature
        data = self.buffer.getvalue()
        if data:
            self._local.write(data)
            self._parts += 1
        if final:
            self._local.close()
            self._local = None
            size = self.offset + len(data)
            single = self.offset == 0 and size < self.blocksize
            count("PUT", self.path, 1 if single else self._parts + 2)
            count("files_written", self.path)
            count("bytes_written", self.path, size)
        return True

    def close(self) -> None:
        super().close()
        if self._local is not None and self.mode == "rb":
            self._local.close()
            self._local = None


class CountingFileSystem(AbstractFileSystem):  # type: ignore[misc]
    """Local files behind the `count://` protocol, every call counted as its S3 requests."""

    protocol = PROTOCOL
    root_marker = "/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local = LocalFileSystem()

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith(f"{PROTOCOL}://"):
            path = path[len(PROTOCOL) + 3 :]
        return path.rstrip("/") or "/"

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        count("HEAD", path)
        try:
            info: dict[str, Any] = self.local.info(path)
        except FileNotFoundError:
            count("LIST", path)
            raise
        if info["type"] != "file":
            count("LIST", path)
        return {**info, "name": path}

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:  # noqa: FBT001, FBT002
        path = self._strip_protocol(path)
        found = self.local.ls(path, detail=detail)
        count("LIST", path, max(1, math.ceil(len(found) / LIST_PAGE)))
        return list(found)

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,  # noqa: FBT001, FBT002
        detail: bool = False,  # noqa: FBT001, FBT002
        **kwargs: Any,
    ) -> Any:
        path = self._strip_protocol(path)
        found = self.local.find(path, maxdepth=maxdepth, withdirs=withdirs, detail=detail)
        count("LIST", path, max(1, math.ceil(len(found) / LIST_PAGE)))
        return found

    def makedirs(self, path: str, exist_ok: bool = False) -> None:  # noqa: FBT001, FBT002
        self.local.makedirs(self._strip_protocol(path), exist_ok=exist_ok)

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:  # noqa: FBT001, FBT002
        self.local.mkdir(self._strip_protocol(path), create_parents=create_parents)

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        self.local.rm_file(path)
        count("DELETE", path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:  # noqa: FBT001, FBT002
        paths = path if isinstance(path, list) else [path]
        if len(paths) > 1 and not recursive:  # s3fs deletes a list of keys in bulk, 1,000 per request
            for one in paths:
                self.local.rm_file(self._strip_protocol(one))
            for start in range(0, len(paths), LIST_PAGE):
                count("DELETE", self._strip_protocol(paths[start]))
            return
        for one in paths:
            one = self._strip_protocol(one)
            if recursive and self.local.isdir(one):
                files = self.local.find(one)
                count("LIST", one, max(1, math.ceil(len(files) / LIST_PAGE)))
                count("DELETE", one, math.ceil(len(files) / LIST_PAGE))
                self.local.rm(one, recursive=True)
            else:
                self.rm_file(one)

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:  # noqa: FBT001, FBT002
        source, target = self._strip_protocol(path1), self._strip_protocol(path2)
        os.replace(source, target)
        count("COPY", target)
        count("DELETE", source)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        with open(path, "rb") as handle:
            if start is not None:
                handle.seek(start if start >= 0 else max(0, os.path.getsize(path) + start))
            data = handle.read() if end is None else handle.read(end - (start or 0))
        count("GET", path)
        count("bytes_read", path, len(data))
        return data

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        self.local.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(value)
        count("PUT", path, 1 if len(value) < BLOCK else math.ceil(len(value) / BLOCK) + 2)
        count("files_written", path)
        count("bytes_written", path, len(value))

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None, **kwargs: Any) -> CountingFile:
        path = self._strip_protocol(path)
        if "w" in mode:
            self.local.makedirs(os.path.dirname(path), exist_ok=True)
        kwargs.pop("autocommit", None)
        return CountingFile(self, path, mode, block_size=block_size, cache_options=kwargs.pop("cache_options", None))

    def created(self, path: str) -> Any:
        return self.local.created(self._strip_protocol(path))

    def modified(self, path: str) -> Any:
        return self.local.modified(self._strip_protocol(path))

    def invalidate_cache(self, path: str | None = None) -> None:
        return None


fsspec.register_implementation(PROTOCOL, CountingFileSystem, clobber=True)
