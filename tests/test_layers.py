"""The package's layers (docs/architecture.md): every import points down or sideways, never up, and the
top-level parts of the package import each other without cycles. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "robustcnn"

# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    {"errors", "options", "seeding", "stats", "_runtime", "batch_backoff", "artifacts"},
    {"data"},
    {"models"},
    {"results", "estimate"},
    {"methods"},
    {"checks"},
    {"runner", "plan", "profiles", "fragments", "executors", "progress", "sharding"},
    {"reports"},
    {"api", "cli", "__main__", "docs_gen"},
]
LEVEL = {part: i for i, layer in enumerate(LAYERS) for part in layer}

# Imports inside functions that still point up. Each is a debt with its way out; the test fails when
# one is added, and when one is paid off but still listed here.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports at run time (``if TYPE_CHECKING:`` blocks left out), relative
    to the package root; ``""`` is the root package itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    here = name.split(".") if name else []
    base = here if is_package else here[:-1]
    skip = {
        id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)
    }
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets |= {
                a.name.removeprefix("robustcnn").lstrip(".") for a in node.names if a.name.split(".")[0] == "robustcnn"
            }
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = base[: len(base) - (node.level - 1)]
                module = ".".join(parent + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "robustcnn":
                module = node.module.removeprefix("robustcnn").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{module}.{alias.name}" if module else alias.name
                targets.add(sub if sub in modules else module)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _top(module: str) -> str:
    return module.split(".")[0]


def test_every_part_of_the_package_has_a_layer():
    parts = {_top(m) for m in _modules() if m}
    assert parts - LEVEL.keys() == set(), "add new top-level modules to LAYERS (and docs/architecture.md)"


def test_no_import_points_up():
    upward = set()
    for module, targets in _graph().items():
        if not module:
            continue  # the root package re-exports the public API
        for target in targets:
            if not target:
                continue  # `from robustcnn import __version__`: the root package is already loaded
            if LEVEL[_top(target)] > LEVEL[_top(module)]:
                upward.add((module, target))
    new = {(m, t) for m, t in upward if (m, t) not in KNOWN_UPWARD and (m, _top(t)) not in KNOWN_UPWARD}
    assert not new, "imports pointing up a layer: " + ", ".join(f"{m} -> {t}" for m, t in sorted(new))
    paid = {(m, t) for m, t in KNOWN_UPWARD if not any(um == m and (ut == t or _top(ut) == t) for um, ut in upward)}
    assert not paid, f"no longer upward, remove from KNOWN_UPWARD: {sorted(paid)}"


def test_no_cycles_between_parts_of_the_package():
    edges: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        for target in targets:
            if module and target and _top(module) != _top(target):
                if (module, target) in KNOWN_UPWARD or (module, _top(target)) in KNOWN_UPWARD:
                    continue
                edges.setdefault(_top(module), set()).add(_top(target))
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path[path.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_check_is_walked_like_the_package():
    """The walker sees relative, absolute and submodule imports (a walker that sees nothing passes anything)."""
    graph = _graph()
    assert "checks" in graph["checks.accuracy.clean"]
    assert "results.schema" in graph["checks.accuracy.clean"]
    assert "results.writer" in graph["runner"]
    assert "models.zoo" in graph["cli"]


def lines_by_layer() -> list[tuple[str, int, int]]:
    """(layer, files, lines of code) from the lowest layer up; a line of code is any line that is not blank
    or a comment (docstrings count)."""
    counts = [[0, 0] for _ in LAYERS]
    for name, path in _modules().items():
        if not name:
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        count = counts[LEVEL[_top(name)]]
        count[0] += 1
        count[1] += sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return [
        (", ".join(f"`{part}`" for part in sorted(layer)), files, n)
        for layer, (files, n) in zip(LAYERS, counts, strict=True)
    ]


def test_every_layer_has_code():
    assert all(files and n for _, files, n in lines_by_layer())


if __name__ == "__main__":  # python tests/test_layers.py: the table in docs/architecture.md
    rows = lines_by_layer()
    print("| layer | files | lines of code |\n|---|---:|---:|")
    for layer, files, n in reversed(rows):
        print(f"| {layer} | {files} | {n} |")
    print(f"| total | {sum(r[1] for r in rows)} | {sum(r[2] for r in rows)} |")
