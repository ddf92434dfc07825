"""Content identity of the files steps read (models, blocklists, word lists), through fsspec.

A unit's reuse key holds the identity of every asset its steps read, so a file replaced at the same path redoes
the shards. The identity is the store's ETag where it gives one (S3, GCS), else the file's SHA-256. Hashing
happens once per run on the driver, and is cached by (url, size, mtime): an 800 MB model is read again only
when it changed. Touching a file without changing its bytes keeps its identity (the hash decides, not the mtime).

Workers key their in-process caches of asset contents on `current_version`, so a worker that read a file once
reads it again after it was replaced, even when Ray reuses the worker process across runs.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from engine.io.paths import filesystem, has_protocol

HASH_CHUNK_BYTES = 1 << 22

_versions: dict[str, tuple[int, str]] = {}
_versions_lock = threading.Lock()


def _etag(info: Mapping[str, Any]) -> str | None:
    value = info.get("ETag") or info.get("etag")
    return str(value).strip('"') if value else None


def _mtime(info: Mapping[str, Any]) -> str:
    return str(info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created") or "")


def asset_identity(
    url: str,
    storage_options: dict[str, Any] | None = None,
    *,
    known: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The content identity of the file at `url`: `{size, etag}`, or `{size, mtime, sha256}` where no ETag.

    `known` maps urls to identities recorded earlier (the hash cache); a recorded SHA-256 is reused when the
    file's size and mtime are unchanged, so the file is not read again.

    Raises:
        FileNotFoundError: no file at `url`.
    """
    fs, path = filesystem(url, storage_options or {})
    fs.invalidate_cache(path)  # never an identity from a listing cached before the file was replaced
    info = fs.info(path)
    if info.get("type") == "directory":
        msg = f"{url} is a folder, not a file"
        raise FileNotFoundError(msg)
    size = int(info.get("size") or 0)
    etag = _etag(info)
    if etag:
        return {"size": size, "etag": etag}
    mtime = _mtime(info)
    previous = (known or {}).get(url)
    if previous and previous.get("size") == size and previous.get("mtime") == mtime and previous.get("sha256"):
        return {"size": size, "mtime": mtime, "sha256": str(previous["sha256"])}
    digest = hashlib.sha256()
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return {"size": size, "mtime": mtime, "sha256": digest.hexdigest()}


def identity_token(identity: Mapping[str, Any]) -> str:
    """The part of an identity that decides reuse: `etag:<etag>` or `sha256:<digest>` (never the mtime)."""
    if identity.get("etag"):
        return f"etag:{identity['etag']}"
    return f"sha256:{identity['sha256']}"


def current_version(url: str, storage_options: dict[str, Any] | None = None) -> tuple[int, str]:
    """A cheap version of the file at `url` for in-process caches: (size, mtime or ETag).

    Local files are stat'ed on every call. Remote files are asked once and remembered until
    `forget_versions` (which every unit calls when it starts), so a batch costs no storage request.
    """
    if not has_protocol(url) or url.startswith("file://"):
        stat = os.stat(url.removeprefix("file://"))
        return stat.st_size, str(stat.st_mtime_ns)
    with _versions_lock:
        found = _versions.get(url)
    if found is not None:
        return found
    fs, path = filesystem(url, storage_options or {})
    fs.invalidate_cache(path)
    info = fs.info(path)
    version = (int(info.get("size") or 0), _etag(info) or _mtime(info))
    with _versions_lock:
        _versions[url] = version
    return version


def forget_versions() -> None:
    """Ask remote assets for their version again (a new unit starts: a file may have been replaced)."""
    with _versions_lock:
        _versions.clear()
