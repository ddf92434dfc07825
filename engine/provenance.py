"""Where a result came from: the engine's git revision and the machine, recorded beside outputs and benchmarks."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def git_state() -> dict[str, Any]:
    """The engine checkout's revision and whether it has uncommitted changes (None outside a checkout)."""
    here = Path(__file__).parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    revision = git("rev-parse", "HEAD")
    # Results appended by benchmarks (benchmarks/results/) do not make the code dirty.
    status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)benchmarks/results")
    status = status if revision else None
    return {"revision": revision or None, "dirty": bool(status) if status is not None else None}


def machine() -> dict[str, Any]:
    """CPU model and count, Python and platform: enough to tell whether two runs are comparable."""
    model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
