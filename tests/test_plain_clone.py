"""README's test command passes on a plain clone: tests needing the team's shared corpora skip and say why (issue 12).

The suite is run on the tests that read ../shared/corpora with `CORPUS_ENGINE_SHARED` pointing at an empty folder,
as a fresh clone sees the world: every such test must skip (not fail, not error) with a reason naming the corpus
it needs and what for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, SHARED_ENV

USERS = ["tests/steps/test_language_id.py", "tests/steps/test_quality.py"]


def test_tests_needing_shared_corpora_skip_with_their_reason(tmp_path: Path) -> None:
    env = {**os.environ, SHARED_ENV: str(tmp_path / "no-shared-here"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", *USERS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    counted = sum(int(re.match(r"SKIPPED \[(\d+)\]", line).group(1)) for line in skips)  # type: ignore[union-attr]
    assert counted == 12, done.stdout[-3000:]  # 11 language-id tests (9 languages) and 1 training test
    for line in skips:
        assert "needs the shared corpus 'lingua-langid-testdata'" in line or "'whatlang-examples'" in line, line
        assert "not in a clone" in line
        assert f"set {SHARED_ENV}" in line
