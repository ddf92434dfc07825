"""Shared fixtures: tiny batches, an in-memory filesystem, one local Ray per test session, sample data."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from engine.batch import make_batch
from tests.fasttext_fixtures import tiny_fasttext_model  # noqa: F401  (a fixture shared by every test module)

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "data" / "sample"
# The team's real-data folder (../shared beside the repo); point this variable elsewhere to run as a plain clone.
SHARED_ENV = "CORPUS_ENGINE_SHARED"
SHARED_CORPORA = Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared") / "corpora"


def shared_corpus(name: str, needed_for: str) -> Path:
    """`../shared/corpora/<name>`, or skip the calling test saying which corpus it needs and what for.

    Those corpora are real data kept beside the repo on the team's machines, not in it: a plain clone skips these
    tests (with this reason) and passes the rest.
    """
    path = SHARED_CORPORA / name
    if not path.is_dir():
        pytest.skip(
            f"needs the shared corpus {name!r} ({needed_for}); {path} does not exist: the team's corpora live "
            f"beside the repo in ../shared/corpora, not in a clone (set {SHARED_ENV} to the folder holding corpora/)"
        )
    return path


@pytest.fixture
def tiny_batch() -> Callable[..., pa.Table]:
    """Build a batch from texts (and optional extra columns): `tiny_batch(["a b", "c"], url=[...])`."""

    def build(texts: list[str | None], **columns: list[object]) -> pa.Table:
        return make_batch({"text": texts, **columns})

    return build


@pytest.fixture
def memfs() -> Iterator[fsspec.AbstractFileSystem]:
    """The fsspec memory filesystem, emptied before and after the test."""
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """A local Ray with 2 CPUs, started once per test session (ray.init takes seconds)."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    if not ray.is_initialized():
        # address="local": a Ray of the session's own, never a cluster `ray start` left on the machine.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def sample_dir() -> Path:
    """The sample corpus shipped in the repo (4 Parquet shards of real Common Crawl text)."""
    return SAMPLE_DIR


@pytest.fixture
def shared_corpora(request: pytest.FixtureRequest) -> Path:
    """../shared/corpora (real data); prefer `shared_corpus(name, needed_for)`, whose skip reason says what for."""
    if not SHARED_CORPORA.is_dir():
        pytest.skip(
            f"{request.node.name} reads the team's shared corpora; {SHARED_CORPORA} does not exist (they live beside "
            f"the repo in ../shared/corpora, not in a clone; set {SHARED_ENV} to the folder holding corpora/)"
        )
    return SHARED_CORPORA


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port (once per session); yields s3fs storage_options for it."""
    import socket

    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield {"key": "testing-key", "secret": "s3cr3t-never-logged", "endpoint_url": f"http://127.0.0.1:{port}"}
    server.stop()
