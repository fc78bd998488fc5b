"""The house as drawn, checked module by module in the packages that hold the commands, the
benchmarks, the data, the rewards, the peers and the study: the benchmarks never import the
command line (`cli` drives `bench`, not the other way), no two modules import each other, even
round a loop inside one package, and every file and function fits on a reader's screen
(STYLE.md: a file under ~500 lines, a function under 60)."""

from __future__ import annotations

import ast
from pathlib import Path

from test_import_graph import SRC, cycles

PACKAGES = ("bench", "cli", "data", "peers", "rewards", "study")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 60


def imported(body: list[ast.stmt], root: str) -> list[tuple[str, int]]:
    """Every absolute `root.*` import in `body`, functions included, `if TYPE_CHECKING:` blocks
    left out; `from pkg import name` gives both `pkg` and `pkg.name` (one of them is a module)."""
    out: list[tuple[str, int]] = []
    for node in body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            out += imported(node.orelse, root)
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == root]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == root:
            out += [(f"{node.module}.{a.name}", node.lineno) for a in node.names] + [(node.module, node.lineno)]
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                out += imported([child], root)
            elif isinstance(child, ast.excepthandler):
                out += imported(child.body, root)
    return out


def module_graph(src: Path) -> dict[str, dict[str, str]]:
    """module -> {imported module of the package at `src`: 'file:line'}; `from pkg import name`
    counts as importing `pkg.name` where that is a module, else `pkg`."""
    root = src.name
    paths = {}
    for path in src.rglob("*.py"):
        parts = path.relative_to(src.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, dict[str, str]] = {}
    for name, path in paths.items():
        graph[name] = {}
        found = imported(ast.parse(path.read_text()).body, root)
        for module, line in found:
            if module not in paths or (module, line) in [(m.rpartition(".")[0], n) for m, n in found if m in paths]:
                continue  # a function or class, or a package whose submodule this line imports
            if module != name:
                graph[name].setdefault(module, f"{path.relative_to(src.parent)}:{line}")
    return graph


def ours(module: str) -> bool:
    return module.split(".")[1:2] and module.split(".")[1] in PACKAGES


def test_bench_never_imports_the_command_line():
    graph = module_graph(SRC)
    upward = [f"{m} -> {t} ({w})" for m, edges in graph.items() if m.startswith("dashrl.bench")
              for t, w in edges.items() if t.startswith("dashrl.cli")]  # fmt: skip
    assert not upward, upward


def test_no_import_cycle_between_modules():
    graph = module_graph(SRC)
    bad = [c for c in cycles(graph) if any(ours(m) for m in c)]
    detail = [f"{a} -> {b} ({graph[a][b]})" for comp in bad for a in comp for b in graph[a] if b in comp]
    assert not bad, f"import cycles {bad}: " + "; ".join(detail)


def test_files_and_functions_fit_on_a_screen():
    too_long = []
    for package in PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            text = path.read_text()
            if len(text.splitlines()) >= MAX_FILE_LINES:
                too_long.append(f"{path.relative_to(SRC)}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        too_long.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}: {n} lines")
    assert not too_long, too_long


def test_the_checks_find_a_cycle_inside_a_package(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from pkg.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from pkg.sub import a\n")
    graph = module_graph(pkg)
    assert graph["pkg.sub.a"] == {"pkg.sub.b": "pkg/sub/a.py:1"}
    assert graph["pkg.sub.b"] == {"pkg.sub.a": "pkg/sub/b.py:2"}
    assert cycles(graph) == [["pkg.sub.a", "pkg.sub.b"]]
    (pkg / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import a\n"
    )
    assert cycles(module_graph(pkg)) == []
