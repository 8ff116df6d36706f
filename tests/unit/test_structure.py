"""The package's structure, as ARCHITECTURE.md asks for it: no import cycles (imports inside
functions included), the engine free of Tango, FastAPI and the receive side's compiled lane,
and the Tango device and the REST sidecar unaware of each other."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "tango_receiver"
ROOT = PACKAGE.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every package module ``name`` imports anywhere in its body, with the packages whose
    ``__init__`` that import runs (those it sits in have run theirs already)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found |= {
                ".".join(parts[:i])
                for i in range(1, len(parts) + 1)
                if ".".join(parts[:i]) in MODULES
            }
    # the packages a module sits in have run their __init__ before it: no edge to them
    return {t for t in found if t != name and not name.startswith(t + ".")}


GRAPH = {name: imports_of(name) for name in MODULES}


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def reachable(start: str) -> set[str]:
    seen, pending = set(), [start]
    while pending:
        for target in GRAPH[pending.pop()] - seen:
            seen.add(target)
            pending.append(target)
    return seen


def third_party(name: str) -> set[str]:
    """Top-level names of what a module imports from outside the package."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - {ROOT}


def test_the_graph_sees_imports_at_every_level():
    assert f"{ROOT}.detector" in GRAPH[f"{ROOT}.config"]
    assert f"{ROOT}.api" in GRAPH[f"{ROOT}.tango.server"]  # the package whose __init__ runs
    assert f"{ROOT}.tango.server" in GRAPH[f"{ROOT}.cli"]  # imported inside a function


def test_no_import_cycles():
    assert cycles() == []


def test_the_engine_imports_neither_tango_nor_fastapi_nor_the_lane():
    engine = {name for name in MODULES if name.startswith(f"{ROOT}.engine")}
    for name in engine:
        assert not third_party(name) & {"tango", "fastapi", "uvicorn"}, name
    writer = reachable(f"{ROOT}.engine.writer")
    assert f"{ROOT}.lane" not in writer and f"{ROOT}.detector" not in writer


def test_tango_device_and_rest_sidecar_do_not_import_each_other():
    assert not any(n.startswith(f"{ROOT}.api") for n in reachable(f"{ROOT}.tango.device"))
    assert not any(n.startswith(f"{ROOT}.tango") for n in reachable(f"{ROOT}.api.server"))


def test_codecs_import_nothing_else_of_the_package():
    for name in MODULES:
        if name.startswith(f"{ROOT}.codecs"):
            assert all(t.startswith(f"{ROOT}.codecs") for t in GRAPH[name]), name


def test_the_client_library_needs_only_the_codecs():
    """Consumers import ``tango_receiver.client`` alone: it must not drag in the engine, Tango,
    FastAPI or h5py (only ``consume --save`` writes HDF5)."""
    library = reachable(f"{ROOT}.client") | {f"{ROOT}.client"}
    for name in library:
        assert name.startswith((f"{ROOT}.client", f"{ROOT}.codecs")), name
        assert not third_party(name) & {"tango", "fastapi", "h5py"}, name
