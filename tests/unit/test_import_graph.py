"""The import direction of dashrl's parts: no two packages (or top-level modules) import each other,
directly or round a loop. Lazy imports inside functions count (they are real edges at run time);
imports under `if TYPE_CHECKING:` do not.

The layers this keeps: `dist` (Ray, the transport) is below `train` (the loop hands it the
`Learner` class), `eval` (evaluation sets and grading) is below `train`, entry points
(`cli`, `bench`, `tune`, ...) are on top, and atomic writes live in `dashrl.runtime.io`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import dashrl

SRC = Path(dashrl.__file__).parent


def _part(module: str, root: str) -> str | None:
    """`dashrl.train.loop` -> `train`; `dashrl.runtime.io` -> `io`; `dashrl` -> `dashrl`; None if not ours."""
    parts = module.split(".")
    if parts[0] != root:
        return None
    return parts[1] if len(parts) > 1 else root


def _imports(body: list[ast.stmt], root: str) -> list[tuple[str, int]]:
    """Absolute `root.*` imports anywhere in `body` (functions too), except TYPE_CHECKING blocks."""
    out: list[tuple[str, int]] = []
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out += _imports(node.orelse, root)
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from dashrl import io` names the module `dashrl.runtime.io`
            out += [
                (f"{node.module}.{a.name}" if node.module == root else node.module, node.lineno) for a in node.names
            ]
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                out += _imports([child], root)
            elif isinstance(child, ast.excepthandler):
                out += _imports(child.body, root)
    return out


def import_graph(src: Path) -> dict[str, dict[str, str]]:
    """part -> {imported part: 'file:line' of one such import} over the package at `src`."""
    root = src.name
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).with_suffix("").parts
        part = root if rel == ("__init__",) else rel[0]
        for module, line in _imports(ast.parse(path.read_text()).body, root):
            target = _part(module, root)
            if target is not None and target != part:
                where = f"{path.relative_to(src.parent)}:{line}"
                if target in [p.stem for p in src.iterdir()] or target == root:
                    graph[part].setdefault(target, where)
    return graph


def cycles(graph: dict[str, dict[str, str]]) -> list[list[str]]:
    """The strongly connected parts with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_between_dashrl_parts():
    graph = import_graph(SRC)
    assert {"train", "distributed", "eval", "runtime"} <= set(graph) | {t for e in graph.values() for t in e}
    bad = cycles(graph)
    detail = [f"{a} -> {b} ({graph[a][b]})" for comp in bad for a in comp for b in graph.get(a, {}) if b in comp]
    assert not bad, f"import cycles {bad}: " + "; ".join(detail)


def test_the_layers_named_in_the_docstring_hold():
    graph = import_graph(SRC)
    assert "train" not in graph.get("distributed", {}), graph["distributed"]
    assert "train" not in graph.get("eval", {}), graph["eval"]
    assert "distributed" in graph["train"]  # the loop opens the Ray backend
    assert set(graph.get("runtime", {})) == set()  # runtime is a leaf: standard library only


def test_the_checker_finds_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from pkg.b import f\n")
    (pkg / "b.py").write_text(
        "def f():\n    try:\n        from pkg.a import g\n    except ImportError:\n        pass\n"
    )
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import f\nfrom pkg import a\n"
    )
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(pkg)
    assert cycles(graph) == [["a", "b"]]
    assert graph["c"] == {"a": "pkg/c.py:4"} and graph["d"] == {"c": "pkg/d.py:1"}
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import g\n")
    assert cycles(import_graph(pkg)) == []


def module_graph(src: Path) -> dict[str, dict[str, str]]:
    """module -> {imported module: 'file:line'}: the same imports, between modules instead of parts
    (`from pkg.sub import name` is an edge to `pkg.sub`, or to `pkg.sub.name` when that is a module)."""
    root = src.name
    modules = {}
    for path in sorted(src.rglob("*.py")):
        parts = path.relative_to(src.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for name, path in modules.items():
        for module, line in _imports(ast.parse(path.read_text()).body, root):
            target = module
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].setdefault(target, f"{path.relative_to(src.parent)}:{line}")
    return graph


def test_no_two_modules_of_the_loop_import_each_other():
    """Inside the parts a training step runs through (train, rollout, distributed, eval, the
    policy): a piece two modules share lives in a third, instead of each importing the other."""
    graph = module_graph(SRC)
    ours = ("dashrl.train", "dashrl.rollout", "dashrl.distributed", "dashrl.eval", "dashrl.policy", "dashrl.totals")
    bad = [c for c in cycles(graph) if any(m.startswith(ours) for m in c)]
    assert not bad, f"module cycles {bad}: " + "; ".join(f"{a} -> {b} ({graph[a][b]})" for c in bad for a in c
                                                         for b in graph.get(a, {}) if b in c)  # fmt: skip
