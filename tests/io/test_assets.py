"""Asset identities (issue 11): content hashes for local files, ETags on S3, the hash cache, in-process versions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import fsspec
import pytest

from engine.io.assets import asset_identity, current_version, forget_versions, identity_token


def test_local_identity_is_the_content_hash_and_ignores_touching(tmp_path: Path) -> None:
    path = tmp_path / "domains.txt"
    path.write_text("bad.com\n")
    first = asset_identity(str(path))
    assert first["sha256"] == hashlib.sha256(b"bad.com\n").hexdigest()
    assert first["size"] == 8
    os.utime(path, ns=(1, 1))  # touched: new mtime, same bytes
    touched = asset_identity(str(path))
    assert touched["mtime"] != first["mtime"]
    assert identity_token(touched) == identity_token(first)
    path.write_text("bad.org\n")  # same size, other bytes
    assert identity_token(asset_identity(str(path))) != identity_token(first)


def test_recorded_hash_is_reused_while_size_and_mtime_match(tmp_path: Path) -> None:
    """The hash cache: a file whose size and mtime are unchanged is not read again (an 800 MB model, nightly)."""
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights")
    seen = asset_identity(str(path))
    known = {str(path): {**seen, "sha256": "recorded-earlier"}}
    assert asset_identity(str(path), known=known)["sha256"] == "recorded-earlier"  # not rehashed
    os.utime(path, ns=(5, 5))
    assert asset_identity(str(path), known=known)["sha256"] == seen["sha256"]  # mtime moved: hashed again
    known_other_size = {str(path): {**seen, "size": 1, "sha256": "recorded-earlier"}}
    assert asset_identity(str(path), known=known_other_size)["sha256"] == seen["sha256"]


def test_missing_asset_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asset_identity(str(tmp_path / "absent.txt"))


@pytest.mark.s3
def test_s3_identity_is_the_etag(s3_server: dict[str, str]) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("assets-etag")
    url = "s3://assets-etag/models/quality.bin"
    fs.pipe(url, b"model one")
    first = asset_identity(url, s3_server)
    assert set(first) == {"size", "etag"}
    assert identity_token(first) == f"etag:{first['etag']}"
    fs.pipe(url, b"model two")  # retrained in place, same size
    second = asset_identity(url, s3_server)
    assert second["etag"] != first["etag"]
    fs.pipe(url, b"model one")  # the same bytes again: the same identity
    assert asset_identity(url, s3_server) == first


def test_remote_version_is_remembered_until_a_unit_forgets(memfs: fsspec.AbstractFileSystem) -> None:
    memfs.pipe("/lists/domains.txt", b"a.com\n")
    url = "memory://lists/domains.txt"
    forget_versions()
    before = current_version(url)
    memfs.pipe("/lists/domains.txt", b"a.com\nb.com\n")
    assert current_version(url) == before  # one request per unit, not per batch
    forget_versions()
    assert current_version(url) != before


def test_local_version_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "domains.txt"
    path.write_text("a.com\n")
    before = current_version(str(path))
    path.write_text("a.com\nb.com\n")
    assert current_version(str(path)) != before
