"""fsspec paths: listing input shards, their relative names and fingerprints."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from engine.errors import InputError

PARQUET_SUFFIX = ".parquet"


@dataclass(frozen=True)
class Shard:
    """One input file: its full URL and its name relative to the input root (no `.parquet` suffix)."""

    url: str
    rel: str


# Object stores throttle (503 SlowDown) and drop connections: retry with backoff, never wait forever.
S3_CLIENT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 10,
    "read_timeout": 120,
    "retries": {"max_attempts": 10, "mode": "adaptive"},
}


def with_storage_defaults(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """`storage_options` plus the engine's retry and timeout defaults for object stores (user keys win)."""
    if not url.startswith(("s3://", "s3a://")):
        return storage_options
    config = {**S3_CLIENT_DEFAULTS, **storage_options.get("config_kwargs", {})}
    return {**storage_options, "config_kwargs": config}


def filesystem(url: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem serving `url` and the path within it (credentials from options or the environment)."""
    fs, path = url_to_fs(url, **with_storage_defaults(url, storage_options))
    return fs, path


def has_protocol(url: str) -> bool:
    return "://" in url


def absolute(url: str) -> str:
    """Local paths made absolute (Ray workers may run elsewhere in the tree); URLs unchanged."""
    return url if has_protocol(url) else os.path.abspath(url)


def full_url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A path within `fs` as a URL that `url_to_fs` opens again (local paths stay plain)."""
    return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)


def list_files(url: str, storage_options: dict[str, Any], pattern: str = "**/*") -> list[str]:
    """URLs of the files under folder `url` whose path relative to it matches the glob `pattern`, sorted.

    An absent folder holds no files. Listings are never served from fsspec's cache: another task may have
    written there since.
    """
    return sorted(list_file_infos(url, storage_options, pattern))


def list_file_infos(url: str, storage_options: dict[str, Any], pattern: str = "**/*") -> dict[str, dict[str, Any]]:
    """`list_files` with what the listing says of each file (size, etag or mtime): no request per file."""
    fs, root = filesystem(url, storage_options)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    try:
        found = fs.glob(f"{root}/{pattern}", detail=True)
    except FileNotFoundError:
        return {}
    return {full_url(fs, path): info for path, info in found.items() if info.get("type") == "file"}


def relative_path(url: str, folder: str, storage_options: dict[str, Any]) -> str:
    """The path of `url` relative to `folder` (both as listed or joined: URLs or local paths)."""
    root = filesystem(folder, storage_options)[1].rstrip("/")
    return filesystem(url, storage_options)[1][len(root) + 1 :]


def list_shards(url: str, storage_options: dict[str, Any], pattern: str) -> list[Shard]:
    """Every shard under `url` (or `url` itself if it is a file), sorted by relative name.

    Raises:
        InputError: the path does not exist, or holds no file matching `pattern`.
    """
    return list(list_shard_fingerprints(url, storage_options, pattern))


def list_shard_fingerprints(url: str, storage_options: dict[str, Any], pattern: str) -> dict[Shard, dict[str, Any]]:
    """`list_shards` with each shard's `fingerprint`, taken from the listing (no request per shard).

    Raises:
        InputError: the path does not exist, or holds no file matching `pattern`.
    """
    try:
        fs, root = filesystem(url, storage_options)
        if not fs.exists(root):
            msg = f"input.path {url!r} does not exist; check the path (and storage_options for object storage)"
            raise InputError(msg)
        if fs.isfile(root):
            name = root.rsplit("/", 1)[-1]
            return {Shard(full_url(fs, root), name.removesuffix(PARQUET_SUFFIX)): fingerprint_of(fs.info(root))}
        infos = list_file_infos(url, storage_options, pattern)
    except InputError:
        raise
    except (OSError, ValueError) as error:
        msg = f"input.path {url!r} cannot be listed: {error}"
        raise InputError(msg) from None
    if not infos:
        msg = f"input.path {url!r} holds no shard matching {pattern!r}; point it at a folder of Parquet files"
        raise InputError(msg)
    base = full_url(fs, root.rstrip("/"))
    return {Shard(u, u[len(base) + 1 :].removesuffix(PARQUET_SUFFIX)): fingerprint_of(infos[u]) for u in sorted(infos)}


def fingerprint(url: str, storage_options: dict[str, Any]) -> dict[str, Any]:
    """What identifies a shard's content without reading it: size plus etag, or mtime where no etag."""
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache(path)
    return fingerprint_of(fs.info(path))


def fingerprint_of(info: dict[str, Any]) -> dict[str, Any]:
    """`fingerprint` from what a listing or `info` returned for a file."""
    version = (
        info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("created") or info.get("LastModified")
    )
    return {"size": int(info.get("size") or 0), "version": str(version)}


def all_exist(urls: list[str], storage_options: dict[str, Any]) -> bool:
    """Whether every one of `urls` exists."""
    for url in urls:
        fs, path = filesystem(url, storage_options)
        if not fs.exists(path):
            return False
    return True


def remove_files(urls: list[str], storage_options: dict[str, Any]) -> None:
    """Delete files (ignoring those already gone)."""
    for url in urls:
        fs, path = filesystem(url, storage_options)
        if fs.exists(path):
            fs.rm(path)
