"""The house's one-way arrows, checked on the source (every import, also those inside functions).

model.common <- model.embedding <- model.collections <- model.evaluation <- model.training
index/ and app/ use model.common, .embedding and .collections; only app/cli reaches training
or evaluation; nothing under model/ imports index/ or app/, nothing under index/ imports app/;
and no module takes part in an import circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "index", "app")

# Which first-party prefixes each part may import (besides itself).
MODEL_ORDER = ("model.common", "model.embedding", "model.collections", "model.evaluation", "model.training")
SERVING_SIDE = ("model.common", "model.embedding", "model.collections")
ALLOWED: dict[str, tuple[str, ...]] = {
    **{layer: MODEL_ORDER[: i + 1] for i, layer in enumerate(MODEL_ORDER)},
    "index": (*SERVING_SIDE, "index"),
    "app": (*SERVING_SIDE, "index", "app"),
    "app.cli": (*MODEL_ORDER, "index", "app"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_party_imports(path: Path) -> set[str]:
    """Every module of ours that `path` imports, wherever the import statement sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from pkg import module`
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    return {name: {m for m in first_party_imports(p) if m in modules and m != name} for name, p in modules.items()}


def part_of(module: str) -> str:
    """The most specific key of ALLOWED that `module` lies in."""
    keys = [k for k in ALLOWED if module == k or module.startswith(k + ".")]
    if not keys:
        return module
    return max(keys, key=len)


def test_every_import_follows_the_arrows() -> None:
    wrong = []
    for module, imports in sorted(graph().items()):
        part = part_of(module)
        if part not in ALLOWED:
            continue  # a package's top-level __init__ (docs only)
        for target in sorted(imports):
            if not any(target == ok or target.startswith(ok + ".") for ok in ALLOWED[part]):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the one-way arrows:\n" + "\n".join(wrong)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_circles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("edges", "circular"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a2"}, "a2": set(), "b": {"b"}}, True),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, False),
    ],
)
def test_the_circle_finder_itself(edges: dict[str, set[str]], circular: bool) -> None:
    assert (find_cycle(edges) is not None) == circular


def test_the_arrow_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("def f():\n    from model.training.train import train\n")
    assert "model.training.train" in first_party_imports(bad)
    assert part_of("index.build") == "index" and part_of("app.cli.train") == "app.cli"


# Settings enter through app.config.Settings; torchrun's variables through model.common.processes.
ENVIRONMENT_READERS = {"app/config.py", "model/common/processes.py"}


def test_the_environment_is_read_in_two_places_only() -> None:
    readers = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                reads = (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")) or (
                    isinstance(node, ast.Name) and node.id in ("environ", "getenv")
                )
                if reads:
                    readers.append(str(path.relative_to(ROOT)))
    assert set(readers) <= ENVIRONMENT_READERS, sorted(set(readers) - ENVIRONMENT_READERS)


def test_the_service_and_the_cli_import_without_torch() -> None:
    """The API image has no torch: the service, and the CLI's own module, must import without it
    (commands that train or embed with torch import it when they run)."""
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import app.main, app.cli, app.adaptation"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
