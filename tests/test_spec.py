from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.errors import SpecError
from engine.spec import load_job, parse_job

BASE = {"input": {"path": "in"}, "output": {"path": "out"}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_filled_in() -> None:
    job = parse_job({**BASE, "steps": [{"type": "doc_length"}]})
    assert job.input.text_column == "text"
    assert job.input.id_column == "id"
    assert job.steps[0].type == "doc_length"
    assert job.resolved()["steps"][0]["min_words"] == 1


def test_unknown_key_names_its_path() -> None:
    with pytest.raises(SpecError, match=r"steps\[0\]\.min_wrds: unknown key") as caught:
        parse_job({**BASE, "steps": [{"type": "doc_length", "min_wrds": 3}]})
    assert "keys allowed for doc_length" in str(caught.value)


def test_unknown_top_level_and_nested_keys() -> None:
    with pytest.raises(SpecError, match=r"input\.colour: unknown key"):
        parse_job({"input": {"path": "in", "colour": 1}, "output": {"path": "out"}})
    with pytest.raises(SpecError, match=r"output\.path: Field required"):
        parse_job({"input": {"path": "in"}, "output": {}})


def test_unknown_step_type_lists_known_types() -> None:
    with pytest.raises(SpecError, match=r"steps\[1\]\.type: unknown step type 'nope'; known step types: .*doc_length"):
        parse_job({**BASE, "steps": [{"type": "doc_length"}, {"type": "nope"}]})


def test_step_without_type() -> None:
    with pytest.raises(SpecError, match=r"steps\[0\]\.type: missing"):
        parse_job({**BASE, "steps": [{"min_words": 3}]})


def test_out_of_range_value() -> None:
    with pytest.raises(SpecError, match=r"steps\[0\]\.min_words: Input should be greater than or equal to 0"):
        parse_job({**BASE, "steps": [{"type": "doc_length", "min_words": -1}]})


def test_dedup_section_validated() -> None:
    job = parse_job({**BASE, "dedup": {"type": "minhash"}})
    assert (job.dedup.bands, job.dedup.rows, job.dedup.ngram) == (14, 8, 5)
    with pytest.raises(SpecError, match="score_column"):
        parse_job({**BASE, "dedup": {"type": "minhash", "keep": "highest_score"}})


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ninput: {path: in\noutput: {path: out}\n")
    with pytest.raises(SpecError, match=r"invalid YAML at line \d+, column \d+"):
        load_job(path)


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_job(tmp_path / "nope.yaml")


def test_job_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="must be a YAML mapping"):
        load_job(write(tmp_path, "- just\n- a list\n"))


def test_output_override(tmp_path: Path) -> None:
    job = load_job(write(tmp_path, "input: {path: in}\noutput: {path: out}\n"), output="elsewhere")
    assert job.output.path == "elsewhere"


def test_num_cpus_of_the_embedded_ray_13() -> None:
    assert parse_job(BASE).run.num_cpus is None
    job = parse_job({**BASE, "run": {"num_cpus": 2}})
    assert job.run.num_cpus == 2
    assert job.phase_a_hash() == parse_job(BASE).phase_a_hash()  # where it runs changes no output
    with pytest.raises(SpecError, match=r"run\.num_cpus: Input should be greater than or equal to 1"):
        parse_job({**BASE, "run": {"num_cpus": 0}})


def test_phase_a_hash_tracks_what_changes_outputs() -> None:
    one = parse_job({**BASE, "steps": [{"type": "doc_length", "min_words": 3}]})
    same = parse_job(
        {
            "input": {"path": "other"},
            "output": {"path": "moved"},
            "name": "renamed",
            "steps": [{"type": "doc_length", "min_words": 3}],
        }
    )
    changed = parse_job({**BASE, "steps": [{"type": "doc_length", "min_words": 4}]})
    assert one.phase_a_hash() == same.phase_a_hash()
    assert one.phase_a_hash() != changed.phase_a_hash()


def test_credentials_are_redacted_from_the_resolved_job() -> None:
    job = parse_job({"input": {"path": "s3://b/in", "storage_options": {"secret": "hunter2"}}, "output": {"path": "o"}})
    assert "hunter2" not in str(job.resolved())
    assert "hunter2" not in job.phase_a_hash()


def test_jobs_in_repo_validate() -> None:
    for path in sorted(Path(__file__).resolve().parents[1].glob("jobs/**/*.yaml")):
        assert load_job(path).input.path, path


def test_resolved_job_lists_each_step_once_12() -> None:
    """The resolved job has the preset's steps and no preset, so it validates to the same steps (issue 12)."""
    job = parse_job({**BASE, "preset": "fineweb", "steps": [{"type": "doc_length", "min_words": 3}]})
    resolved = job.resolved()
    assert resolved["preset"] is None
    again = parse_job(resolved)
    assert again.steps == job.steps
    assert len(again.steps) == 7
    assert again.phase_a_hash() == job.phase_a_hash()
    assert yaml.safe_load(job.resolved_yaml()) == resolved


def test_every_section_error_is_reported_with_what_is_allowed_12() -> None:
    with pytest.raises(SpecError) as caught:
        parse_job({"input": "x", "output": {"path": "o", "keep_scores": "maybe"}, "preset": "nah", "run": []})
    lines = str(caught.value).splitlines()
    assert lines[0] == "job: invalid job (4 problems)"
    assert lines[1] == "preset: unknown preset 'nah'; known presets: c4, fineweb, fineweb2, gopher"
    assert lines[2].startswith("input: expected a mapping (keys allowed: path, text_column, ")
    assert lines[3].startswith("output.keep_scores: Input should be a valid boolean")
    assert lines[4] == "run: expected a mapping (keys allowed: max_retries, max_in_flight, cpus_per_task, num_cpus)"


def test_the_score_sidecar_layout_is_part_of_the_phase_a_config_12() -> None:
    """A change of the sidecar's layout redoes the shards of jobs that keep scores (and only those)."""
    from engine.schema import SCORES_LAYOUT

    keeps = parse_job({"input": {"path": "in"}, "output": {"path": "out", "keep_scores": True}})
    plain = parse_job(BASE)
    assert keeps.phase_a_config()["output"]["scores_layout"] == SCORES_LAYOUT >= 2
    assert plain.phase_a_config()["output"]["scores_layout"] is None
