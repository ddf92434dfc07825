"""Unit reuse keys (issue 11): what goes into a key, and how two keys' differences are put in words."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa
import pytest

import engine.runner.keys as keys_module
from engine.batch import Verdict
from engine.errors import SpecError
from engine.io.documents import READER_VERSION
from engine.runner.keys import JobKey, job_key, key_changes, step_version
from engine.spec import JobSpec, parse_job
from engine.steps.base import Filter
from engine.steps.length import DocLength
from tests.fasttext_fixtures import TINY_CONFIG, TinyModel

FINGERPRINT = {"size": 10, "version": "1"}


def job_with(blocklist: Path, *, min_words: int = 50, **extra: object) -> JobSpec:
    return parse_job(
        {
            "input": {"path": "in"},
            "output": {"path": "out"},
            "steps": [
                {"type": "url_filter", "domains_file": str(blocklist)},
                {"type": "doc_length", "min_words": min_words},
            ],
            **extra,
        }
    )


def key_diff(before: JobKey, after: JobKey, *, old_input: dict | None = None) -> list[str]:
    """What `plan` would say about a shard recorded under `before` (input `old_input`), keyed `after` now."""
    return key_changes(
        before.unit_key(old_input or FINGERPRINT),
        after.unit_key(FINGERPRINT),
        previous_config=before.config,
        current_config=after.config,
    )


def changes(old: JobSpec, new: JobSpec, *, old_input: dict | None = None) -> list[str]:
    return key_diff(job_key(old), job_key(new), old_input=old_input)


@pytest.fixture
def blocklist(tmp_path: Path) -> Path:
    path = tmp_path / "domains.txt"
    path.write_text("bad.com\n")
    return path


def test_key_holds_input_config_assets_and_versions(blocklist: Path) -> None:
    key = job_key(job_with(blocklist))
    unit = key.unit_key(FINGERPRINT)
    assert unit["input"] == FINGERPRINT
    assert unit["config"] == job_with(blocklist).phase_a_hash()
    assert unit["assets"]["steps[0].domains_file"].startswith("sha256:")
    assert "steps[0].shipped/banned_words.txt" in unit["assets"]
    expected = {
        "steps[0]": "url_filter@1",
        "steps[1]": f"doc_length@{DocLength.version}",
        "reader": str(READER_VERSION),
    }
    assert unit["versions"] == expected
    assert key_changes(unit, key.unit_key(FINGERPRINT), previous_config=key.config, current_config=key.config) == []


def test_each_component_is_named_when_it_changes(blocklist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = job_with(blocklist)
    assert changes(job, job, old_input={"size": 9, "version": "0"}) == ["changed input"]
    assert changes(job, job_with(blocklist, min_words=60)) == ["changed parameter steps[1].min_words: 50 -> 60"]
    assert changes(job, job_with(blocklist, output={"path": "out", "keep_scores": True})) == [
        "changed parameter output.keep_scores: false -> true",
        "changed parameter output.scores_layout: null -> 2",  # the sidecar's layout (issue 12)
    ]
    before = job_key(job)
    blocklist.write_text("bad.com\nworse.com\n")
    after = job_key(job)
    assert key_diff(before, after) == ["changed asset steps[0].domains_file"]
    current = DocLength.version
    monkeypatch.setattr(DocLength, "version", current + 1)
    assert key_diff(after, job_key(job)) == [f"step steps[1] doc_length: version {current} -> {current + 1}"]


def test_signature_code_version_is_in_a_dedup_job_key(blocklist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without = job_key(job_with(blocklist))
    assert "signatures" not in without.unit_key(FINGERPRINT)["versions"]  # no dedup: signatures are not written
    job = job_with(blocklist, dedup={"type": "minhash"})
    before = job_key(job)
    assert before.unit_key(FINGERPRINT)["versions"]["signatures"] == "1"
    monkeypatch.setattr(keys_module, "SIGNATURE_VERSION", 2)  # normalisation or shingling changed a signature
    assert key_diff(before, job_key(job)) == ["signature code version 1 -> 2"]


def test_moving_an_asset_without_changing_it_changes_nothing(blocklist: Path, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere.txt"
    shutil.copy(blocklist, moved)
    assert changes(job_with(blocklist), job_with(moved)) == []
    assert job_with(blocklist).phase_a_hash() == job_with(moved).phase_a_hash()


def test_inserted_step_is_one_reason_not_a_list_of_shifted_parameters(blocklist: Path) -> None:
    old = job_with(blocklist)
    new = parse_job(
        {
            "input": {"path": "in"},
            "output": {"path": "out"},
            "steps": [
                {"type": "url_filter", "domains_file": str(blocklist)},
                {"type": "gopher_quality"},
                {"type": "doc_length", "min_words": 50},
            ],
        }
    )
    assert changes(old, new) == ["steps changed: url_filter, doc_length -> url_filter, gopher_quality, doc_length"]


def test_missing_asset_is_a_spec_error_naming_the_parameter(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"steps\[0\]\.domains_file: '.*absent\.txt' does not exist"):
        job_key(job_with(tmp_path / "absent.txt"))


class Unversioned(Filter):
    """A step class that declares no behaviour version (a user's own step)."""

    type: Literal["unversioned_test"] = "unversioned_test"
    kind: ClassVar[str] = "filter"

    def __call__(self, batch: pa.Table) -> Verdict:
        return Verdict.keep_all(batch.num_rows)


def test_a_step_without_version_follows_the_engine_version(monkeypatch: pytest.MonkeyPatch) -> None:
    job = parse_job({"input": {"path": "in"}, "output": {"path": "out"}})
    job = job.model_copy(update={"steps": [Unversioned()]})
    before = job_key(job)
    assert step_version(Unversioned()) == f"unversioned_test@engine-{keys_module.__version__}"
    engine_version = keys_module.__version__
    monkeypatch.setattr(keys_module, "__version__", "99.0.0")
    after = job_key(job)
    assert key_diff(before, after) == [
        f"step steps[0] unversioned_test: version engine-{engine_version} -> engine-99.0.0"
    ]


def test_every_built_in_step_declares_a_version() -> None:
    from engine.steps.base import _REGISTRY

    built_in = {name: cls for name, cls in _REGISTRY.items() if cls.__module__.startswith("engine.")}
    assert len(built_in) >= 10
    assert [name for name, cls in built_in.items() if not isinstance(cls.version, int)] == []


def test_old_markers_without_key_are_redone() -> None:
    assert key_changes(None, {"input": {}}, previous_config=None, current_config={}) == [
        "marker written by an older engine (no reuse key)"
    ]


def test_planning_does_not_import_ray() -> None:
    """`corpus-engine plan` runs nothing: no Ray start, no Ray import."""
    import subprocess
    import sys

    code = "import sys, engine.runner.plan, engine.api; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


@pytest.mark.s3
def test_plan_names_a_model_replaced_on_s3(
    s3_server: dict[str, str],
    tmp_path: Path,
    sample_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tiny_fasttext_model: TinyModel,
) -> None:
    """A model on S3 is identified by its ETag: replaced in place, the plan names it and the shard is redone."""
    import json

    import s3fs

    from engine.api import plan_job
    from engine.io.paths import list_shards
    from engine.models.training import train_quality_classifier
    from engine.runner.unit import run_unit

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server["secret"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint_url"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fs = s3fs.S3FileSystem(**s3_server)
    fs.mkdir("models-plan")
    fs.put(tiny_fasttext_model.path, "models-plan/quality.bin")
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(sample_dir / "part-000.parquet", src / "part-000.parquet")
    job = parse_job(
        {
            "name": "s3model",
            "input": {"path": str(src)},
            "output": {"path": str(tmp_path / "out")},
            "steps": [{"type": "quality_classifier", "model": "s3://models-plan/quality.bin", "min_score": 0.5}],
        }
    )
    (shard,) = list_shards(str(src), {}, "**/*.parquet")
    assert run_unit(job, shard).status == "processed"  # in this process: it has the S3 environment
    marker = json.loads((tmp_path / "out/_units/part-000.marker.json").read_text())
    assert (
        marker["key"]["assets"]["steps[0].model"] == f"etag:{fs.info('models-plan/quality.bin')['ETag'].strip(chr(34))}"
    )
    assert plan_job(job)[0].endswith("nothing to redo, every shard is reused")

    retrained = tmp_path / "retrained.bin"
    positives, negatives = [tiny_fasttext_model.negative_source], [tiny_fasttext_model.positive_source]
    train_quality_classifier(positives, negatives, str(retrained), TINY_CONFIG)
    fs.put(str(retrained), "models-plan/quality.bin")
    assert plan_job(job)[1:] == ["  redo         1  changed asset steps[0].model: part-000"]
    assert run_unit(job, shard).status == "processed"
    assert plan_job(job)[0].endswith("nothing to redo, every shard is reused")
