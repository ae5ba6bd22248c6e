"""The layout shows the architecture: no import circles inside the package, no private name used
outside the module that defines it."""

import ast
from pathlib import Path

from conftest import ROOT

PKG = ROOT / "sparsecomp"
ALLOWED_PRIVATE = {"os._exit"}          # the standard library's documented hard exit


def _modules() -> dict:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = f.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _target(mods, cur, node) -> str:
    pkg = cur if mods[cur].name == "__init__.py" else cur.rpartition(".")[0]
    if not node.level:
        return node.module or ""
    base = pkg
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return base + ("." + node.module if node.module else "")


def _edges(mods) -> dict:
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                t = _target(mods, m, node)
                for a in node.names:
                    full = f"{t}.{a.name}"
                    if full in mods:
                        edges[m].add(full)
                    elif t in mods:
                        edges[m].add(t)
            elif isinstance(node, ast.Import):
                edges[m].update(a.name for a in node.names if a.name in mods)
    return edges


def test_no_import_cycles():
    mods = _modules()
    edges = _edges(mods)
    state, cycles = {}, []

    def visit(m, path):                       # depth-first search, package __init__ files excluded
        state[m] = 1
        for e in sorted(edges[m]):
            if mods[e].name == "__init__.py":
                continue
            if state.get(e) == 1:
                cycles.append(path[path.index(e):] + [e])
            elif e not in state:
                visit(e, path + [e])
        state[m] = 2

    for m in sorted(mods):
        if m not in state and mods[m].name != "__init__.py":
            visit(m, [m])
    assert cycles == []


def _defined_private(tree) -> set:
    names = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name.startswith("_"):
            names.add(n.name)
        elif isinstance(n, ast.Attribute) and n.attr.startswith("_") and isinstance(n.ctx, ast.Store):
            names.add(n.attr)
        elif isinstance(n, ast.Name) and n.id.startswith("_") and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    return names


def test_no_private_name_crosses_a_module():
    mods = _modules()
    found = []
    for m, f in mods.items():
        tree = ast.parse(f.read_text())
        own = _defined_private(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and _target(mods, m, n).startswith("sparsecomp"):
                found += [f"{m} imports {a.name}" for a in n.names
                          if a.name.startswith("_") and a.name != "__version__"]
            elif isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__"):
                base = n.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                text = ast.unparse(n)
                if n.attr not in own and text not in ALLOWED_PRIVATE:
                    found.append(f"{m}:{n.lineno} uses {text}")
    assert found == []


def test_the_checks_can_fail(tmp_path):
    """The two checks above see what they claim to see."""
    mods = {"sparsecomp.a": tmp_path / "a.py", "sparsecomp.b": tmp_path / "b.py"}
    mods["sparsecomp.a"].write_text("from .b import x\n")
    mods["sparsecomp.b"].write_text("from .a import _y\n")
    edges = _edges(mods)
    assert edges == {"sparsecomp.a": {"sparsecomp.b"}, "sparsecomp.b": {"sparsecomp.a"}}
    tree = ast.parse("obj._hidden\nself._mine = 1\n")
    assert "_mine" in _defined_private(tree) and "_hidden" not in _defined_private(tree)
