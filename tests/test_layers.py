"""The package's layers read bottom to top: a module imports only layers below its own, and no import cycle exists.

Every `import` in engine/ is read from the source (module level, inside functions and under TYPE_CHECKING alike),
so a cycle hidden by a function-level import fails here too. Regression test for issue 10.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "engine"

# Bottom to top. Each entry is a group (a module, or a package with everything under it); a module may import its
# own group and the groups of lower ranks, never a group of its own rank or above.
LAYERS: list[tuple[str, ...]] = [
    ("engine.schema", "engine.errors", "engine.version", "engine.histograms"),
    ("engine.batch", "engine.stats", "engine.provenance"),
    ("engine.io",),
    ("engine.models",),
    ("engine.steps",),
    ("engine.spec",),
    ("engine.pipeline", "engine.validate"),
    ("engine.dedup",),
    ("engine.runner",),
    ("engine.inspect",),
    ("engine.api",),
    ("engine.cli",),
    ("engine.__main__", "engine"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The engine modules `path` imports (a `from X import y` names X.y when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
    return {target for target in found if target == "engine" or target.startswith("engine.")}


def group_of(module: str) -> tuple[int, str]:
    """(rank, group) of a module: the longest group name that is the module or a package above it."""
    best: tuple[int, str] | None = None
    for rank, groups in enumerate(LAYERS):
        for group in groups:
            matches = module == group or (group != "engine" and module.startswith(group + "."))
            if matches and (best is None or len(group) > len(best[1])):
                best = (rank, group)
    if best is None:
        pytest.fail(f"{module} belongs to no layer: add its group to LAYERS in {__file__}")
    return best


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, name, modules) - {name} for name, path in modules.items()}


def test_every_import_goes_down_a_layer_10() -> None:
    upward = []
    for module, targets in sorted(graph().items()):
        rank, group = group_of(module)
        for target in sorted(targets):
            target_rank, target_group = group_of(target)
            if target_group != group and target_rank >= rank:
                upward.append(
                    f"{module} (layer {rank}, {group}) imports {target} (layer {target_rank}, {target_group})"
                )
    assert not upward, "imports that go up or sideways:\n" + "\n".join(upward)


def test_no_import_cycle_10() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_the_checker_sees_function_level_and_relative_imports_10(tmp_path: Path) -> None:
    """The parser finds the imports that used to hide cycles: inside functions, and `from . import x`."""
    modules = {"engine.io.paths": Path(), "engine.io.layout": Path(), "engine.runner.ray": Path()}
    source = tmp_path / "paths.py"
    source.write_text(
        "def f():\n    from engine.runner.ray import init_ray\n\nfrom . import layout\n", encoding="utf-8"
    )
    found = imports_of(source, "engine.io.paths", modules)
    assert found == {"engine.runner.ray", "engine.io.layout"}
    assert group_of("engine.runner.ray")[0] > group_of("engine.io.paths")[0]
