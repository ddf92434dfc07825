"""The runtime dependencies are what the runtime imports: nothing declared that engine/ never uses (issue 12).

Every `import` in engine/ is read from the source (module level and inside functions); each declared dependency
must be imported by some module, or be loaded by name where the engine names it (fsspec's protocol plugins).
Each third-party module the engine imports must come from a declared dependency (or, for the Ray Job SDK's HTTP
clients, from the `ray[default]` extra that brings them).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
# Declared, not imported: fsspec loads them when a path names their protocol (s3://).
LOADED_BY_PROTOCOL = {"s3fs"}
# Imported, not declared: installed by `ray[default]` for its Job Submission SDK, whose errors submit.py catches.
FROM_RAY_DEFAULT = {"requests", "aiohttp"}


def normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def declared() -> set[str]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {normalise(Requirement(line).name) for line in data["project"]["dependencies"]}


def imported_modules() -> set[str]:
    """Top-level names of the third-party modules engine/ imports."""
    found: set[str] = set()
    for path in (REPO / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in ("engine", "__future__")}


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    installed = packages_distributions()
    return {module: {normalise(d) for d in installed.get(module, [])} for module in modules}


def test_every_runtime_dependency_is_imported_by_the_engine() -> None:
    used = set().union(*distributions_of(imported_modules()).values())
    unused = sorted(declared() - used - LOADED_BY_PROTOCOL)
    assert not unused, f"runtime dependencies nothing in engine/ imports (move them to an extra): {unused}"


def test_every_imported_module_comes_from_a_declared_dependency() -> None:
    wanted = declared()
    for module, dists in sorted(distributions_of(imported_modules()).items()):
        if module in FROM_RAY_DEFAULT:
            continue
        assert dists & wanted, f"engine/ imports {module!r} (from {sorted(dists)}) but pyproject does not declare it"


def test_datasketch_is_a_benchmark_dependency_only() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "datasketch" not in declared()
    assert any(Requirement(r).name == "datasketch" for r in data["project"]["optional-dependencies"]["bench"])
