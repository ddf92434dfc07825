"""README's command examples run verbatim against the shipped sample, and show what the sample gives (issue 12).

Every command README shows is either run here, in a folder holding the repo's `jobs/` and `data/` (as a user runs
them from a clone), or exempt with the reason it cannot run here. Every output README shows is compared with the
real output (tests/readme_examples.py masks times, rates, ids and paths). The Python API block runs too.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from engine.cli import main
from tests.readme_examples import README, blocks, commands, missing_lines, shown_output

REPO = README.parent

# In README order; each runs as the user types it (`corpus-engine` is `python -m engine`).
RUN = [
    "python -m engine run jobs/sample.yaml",
    "corpus-engine validate jobs/sample.yaml --resolved > resolved.yaml",
    "corpus-engine run resolved.yaml --output out/resolved",
    "corpus-engine bench jobs/fineweb.yaml --sample 2000 --examples 3",
    "corpus-engine bench jobs/sample.yaml --shards data/sample/ --examples 1",
    "corpus-engine what-if out/sample --set gopher_quality.min_doc_words=100 --set fineweb_quality.line_punct_thr=0.3",
    "corpus-engine what-if out/sample --set language_id.min_score=0.5",
    "corpus-engine what-if out/sample --set 'gopher_quality.stop_words=[zzz]'",
]
QUICK_START = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && " + RUN[0]
CLUSTER = "needs a running Ray cluster: tests/cluster/test_submit.py submits jobs/sample.yaml to a real Ray head"
EXEMPT = {
    QUICK_START: "sets up a fresh environment (what .ci/run does); its last command is run here",
    "python -m pytest": "the test suite itself",
    "ray get-auth-token": "writes the user's ~/.ray/auth_token",
    "cluster/local_cluster.sh": "starts and stops Ray nodes on this machine; " + CLUSTER,
    "corpus-engine submit jobs/sample.yaml": CLUSTER + " and checks README's session output",
    "corpus-engine status": CLUSTER,
    "corpus-engine logs": CLUSTER,
    "corpus-engine submit jobs/fineweb.yaml": "needs a cloud cluster and an S3 bucket",
    "ray up": "needs a cloud account",
    "ray dashboard": "needs a cloud cluster",
    "ray down": "needs a cloud cluster",
    "kubectl": "needs a Kubernetes cluster with KubeRay",
    "corpus-engine plan nightly.yaml": "a scenario on the user's own job (a blocklist edited, a shard added); "
    "tests/runner/test_rebuild.py runs the same plan and run sequence and checks their lines",
}


def test_every_readme_command_is_run_or_exempt_with_a_reason() -> None:
    shown = commands()
    for command in shown:
        assert command in RUN or any(command.startswith(prefix) for prefix in EXEMPT), (
            f"README shows {command!r}: run it in tests/test_readme.py or exempt it with the reason"
        )
    for command in RUN:
        assert command in shown or command in QUICK_START, f"{command!r} is no longer in README"
    assert QUICK_START in shown


def run_command(command: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """A README command through the CLI entry point, in the current folder; `> FILE` redirects stdout."""
    words = shlex.split(command)
    target = None
    if ">" in words:
        words, target = words[: words.index(">")], words[words.index(">") + 1]
    program = 3 if words[:3] == ["python", "-m", "engine"] else 1
    assert words[0] in ("corpus-engine", "python"), command
    capsys.readouterr()
    code = main(words[program:])
    out, err = capsys.readouterr()
    if target is not None:
        Path(target).write_text(out)
    return code, out, err


def assert_shows(command: str, output: str, label: str | None = None) -> None:
    missing = missing_lines(shown_output(label or command), output)
    assert not missing, f"README shows lines that `{command}` does not print: {missing}\n--- real output:\n{output}"


@pytest.mark.ray
def test_readme_examples_run_verbatim_on_the_sample(
    ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("jobs", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    outputs = {}
    for command in RUN:
        code, out, err = run_command(command, capsys)
        expected = 2 if "stop_words" in command else 0
        assert code == expected, f"{command}: exit {code}\n{err[-3000:]}"
        outputs[command] = out + err
        if command == RUN[0]:  # README then shows the same command run again
            code, again_out, again_err = run_command(command, capsys)
            assert code == 0
            assert_shows(command, again_out + again_err, f"{command} (again)")

    for command in RUN:
        if any(b.marker == f"output of: {command}" for b in blocks()):
            assert_shows(command, outputs[command])
    # The resolved job ran to the identical result.
    sample, resolved = (json.loads((tmp_path / o / "stats.json").read_text()) for o in ("out/sample", "out/resolved"))
    for key in ("docs_in", "docs_kept", "duplicates", "dropped", "step_docs"):
        assert sample[key] == resolved[key], key


@pytest.mark.ray
def test_readme_python_api_block_runs(ray_local: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (code,) = ["\n".join(b.lines) for b in blocks() if b.info == "python"]
    for name in ("jobs", "data"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)  # noqa: S102 - README's own example
    verdict = namespace["verdict"]
    assert list(verdict.keep) == [False, True]  # type: ignore[attr-defined]
    assert namespace["stats"].docs_in == 697  # type: ignore[attr-defined]
    assert (tmp_path / "out/notebook/stats.json").exists()


def test_comparison_masks_times_and_ids_but_not_counts() -> None:
    shown = [
        "done: 697 docs in 20.1s: 697 processed (35 docs/s); shards: 4 processed, 0 skipped of 4",
        "  kept 96 + dropped 599 + duplicates 2 = 697 (conservation holds)",
        "...",
        "job raysubmit_AnR7PuNjVkjXdMNC SUCCEEDED",
        "  url_filter                                      18,400   79.00     0.1%",
        "    [hkuwh2qpuu3i5tljsqtr7kfj5g56hml5] language_score=0.3169 '3korre.se by…",
    ]
    real = (
        "done: 697 docs in 3.2s: 697 processed (218 docs/s); shards: 4 processed, 0 skipped of 4\n"
        "  kept 96 + dropped 599 + duplicates 2 = 697 (conservation holds)\n"
        "job raysubmit_Zz9 SUCCEEDED\n"
        "  url_filter    9,100   1.50     0.1%\n"
        "    [hkuwh2qpuu3i5tljsqtr7kfj5g56hml5] language_score=0.3169 '3korre.se by ekorrar for ekorrar!'\n"
    )
    assert missing_lines(shown, real) == []
    assert missing_lines(shown, real.replace("kept 96", "kept 95")) == [shown[1]]
    assert missing_lines(shown, real.replace("0.1%", "0.2%")) == [shown[4]]
    assert missing_lines(shown, real.replace("0.3169", "0.3170")) == [shown[5]]
