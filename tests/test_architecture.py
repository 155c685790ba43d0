"""The stages' contracts, held against the code's own imports (read with `ast`, lazy imports
inside functions included): data flows one way, nothing runs back up, nothing circles.

    tools/ ──► node/ ──► consensus/, p2p/ ──► execution/ ──► storage/
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("consensus", "execution", "node", "p2p", "storage", "tools", "bench")
STAGES = ("consensus", "execution", "p2p", "storage")
# What each stage may import of the project (besides itself).
ALLOWED = {
    "storage": set(),
    "execution": {"storage"},
    "p2p": {"storage"},
    "consensus": {"execution", "storage"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Project modules `module` imports, at top level or inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                # `from package import module` needs the module; other names, the package
                names.add(submodule if submodule in MODULES else base)
    resolved = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != module:
            resolved.add(name)
    return resolved


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


@pytest.mark.parametrize("stage", STAGES)
def test_stages_import_only_downstream(stage):
    """No module of a stage imports node/ or tools/ (also not lazily), nor a stage that
    is not downstream of it."""
    wrong = []
    for module, imported in GRAPH.items():
        if module.split(".")[0] != stage:
            continue
        for target in imported:
            top = target.split(".")[0]
            if top != stage and top not in ALLOWED[stage]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not circles, circles


def test_the_node_wires_engines_without_looking_at_their_type():
    tree = ast.parse((REPO / "node" / "service.py").read_text())
    checks = [
        ast.unparse(node) for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("isinstance", "getattr")
    ]
    assert not checks, checks


def test_the_shipped_node_has_no_fault_switches():
    """Byzantine behaviour and partitions live in tests/harness_node.py."""
    text = "\n".join(path.read_text() for module, path in MODULES.items()
                     if module.split(".")[0] in ("node", "consensus", "p2p", "tools"))
    for switch in ("LAMINAR_FAULT", "LAMINAR_DEBUG_RPC", "FAULT INJECTION", "laminar_debugBlockPeers"):
        assert switch not in text, switch


def test_every_project_module_is_read():
    """The checks above see the whole tree (a package moved elsewhere would escape them)."""
    by_package = defaultdict(int)
    for module in MODULES:
        by_package[module.split(".")[0]] += 1
    assert all(by_package[p] for p in PACKAGES), dict(by_package)
