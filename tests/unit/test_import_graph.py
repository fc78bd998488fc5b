"""The import direction of dashrl's parts, and no import cycle anywhere.

Two graphs are parsed from the source (every `import`, lazy ones inside functions and those
under `if TYPE_CHECKING:` included: all are real edges to a reader, and the lazy ones at run
time too):
- between **modules**: no cycle at all, also inside one package (`algo.losses` <-> `algo.gspo`
  would fail, and so would `rollout` <-> `rollout.hf`); importing a package's attribute is an
  edge to its `__init__`, importing a submodule an edge to that submodule;
- between **parts** (the top-level packages and modules): each imports only parts of a lower
  layer in `LAYERS`, so the house keeps the shape docs/design.md draws.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import dashrl

SRC = Path(dashrl.__file__).parent

# Bottom to top; a part imports only parts of strictly lower layers. A part is a top-level package
# or module, or a module named here itself: the torch-free registries sit below `config`, which
# validates names against them, and every builder that takes a config section sits above it.
LAYERS: list[set[str]] = [
    {"dashrl", "runtime", "totals", "stats"},  # standard library only (runtime: OpenMP, kernels, io, hardware)
    {"algo.registry", "data.registry", "rollout.registry", "select.registry", "env.registry"},  # names config checks
    {"config"},  # typed sections
    {"models", "rewards", "algo", "select"},  # a model, its tokenizer; rewards and the sandbox; pure math; selectors
    {"policy", "data", "tools"},  # the weights a step trains and samples with; tasks, prompts, datasets; built-in tools
    {"env"},  # environments and tools: schemas, tool calls, chat-template deltas, the multi-turn rollout
    {"rollout"},  # samplers: token ids in, token ids and logprobs out; the local rollout source
    {"eval", "distributed"},  # evaluation sets and pass@k; the Ray transport of the one loop
    {"train"},  # the one loop, the learner, checkpoints, metrics
    {"peers"},  # TRL driven a step at a time, for the bench
    {"bench", "study"},  # benchmarks; the paper's study
    {"cli"},  # the commands
    {"__main__"},
]
LAYER = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def _imports(body: list[ast.stmt], root: str) -> list[tuple[str, str | None, int]]:
    """`(module, imported name or None, line)` of every absolute `root.*` import anywhere in
    `body` (functions and TYPE_CHECKING blocks too)."""
    out: list[tuple[str, str | None, int]] = []
    for node in body:
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == root]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == root:
                out += [(node.module, a.name, node.lineno) for a in node.names]
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                out += _imports([child], root)
            elif isinstance(child, ast.excepthandler):
                out += _imports(child.body, root)
    return out


def modules(src: Path) -> dict[str, Path]:
    """Dotted module name -> file, for the package at `src` (a package is its `__init__.py`)."""
    out = {}
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src.parent).with_suffix("").parts
        out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = path
    return out


def module_graph(src: Path) -> dict[str, dict[str, str]]:
    """module -> {imported module: 'file:line' of one such import}."""
    mods = modules(src)
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for name, path in mods.items():
        for module, attr, line in _imports(ast.parse(path.read_text()).body, src.name):
            target = f"{module}.{attr}" if attr and f"{module}.{attr}" in mods else module
            while target not in mods and "." in target:  # `import pkg.mod.Name`-like: the nearest module
                target = target.rsplit(".", 1)[0]
            if target in mods and target != name:
                graph[name].setdefault(target, f"{path.relative_to(src.parent)}:{line}")
    return graph


def part_of(module: str) -> str:
    """`dashrl.train.loop` -> `train`; `dashrl.policy` -> `policy`; `dashrl` -> `dashrl`; a module
    that `LAYERS` names itself (a registry) -> `algo.registry`."""
    parts = module.split(".")
    if ".".join(parts[1:3]) in LAYER:
        return ".".join(parts[1:3])
    return parts[1] if len(parts) > 1 else parts[0]


def part_graph(src: Path) -> dict[str, dict[str, str]]:
    """part -> {imported part: 'file:line'}: the module graph with each module replaced by its part."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for a, targets in module_graph(src).items():
        for b, where in targets.items():
            if part_of(a) != part_of(b):
                graph[part_of(a)].setdefault(part_of(b), where)
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
    return sorted(found)


def test_no_import_cycle_between_any_two_modules():
    graph = module_graph(SRC)
    assert "dashrl.train.loop" in graph and "dashrl.distributed.backend" in graph  # the parse found them
    bad = cycles(graph)
    detail = [f"{a} -> {b} ({graph[a][b]})" for comp in bad for a in comp for b in graph.get(a, {}) if b in comp]
    assert not bad, f"import cycles {bad}: " + "; ".join(detail)


def test_every_part_has_a_layer():
    parts = {part_of(m) for m in modules(SRC)}
    assert parts - set(LAYER) == set(), f"add these to LAYERS: {sorted(parts - set(LAYER))}"


def test_imports_point_down_the_layers():
    graph = part_graph(SRC)
    upward = [
        f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}) at {where}"
        for a, targets in graph.items()
        for b, where in targets.items()
        if LAYER[b] >= LAYER[a]
    ]
    assert not upward, "; ".join(upward)
    assert "distributed" in graph["train"]  # the loop opens the Ray backend, which never imports the loop
    assert set(graph.get("runtime", {})) == set()  # runtime is a leaf: standard library only


def test_the_checker_finds_cycles_inside_a_package_lazy_or_type_checking(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("from pkg.b import f\n")
    (pkg / "a" / "x.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import y\n")
    (pkg / "a" / "y.py").write_text("def g():\n    from pkg.a.x import h\n")
    (pkg / "b.py").write_text(
        "def f():\n    try:\n        from pkg.a import g\n    except ImportError:\n        pass\n"
    )
    (pkg / "c.py").write_text("from pkg import a\nimport pkg.b\n")
    graph = module_graph(pkg)
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.a.x", "pkg.a.y"]]
    assert graph["pkg.c"] == {"pkg.a": "pkg/c.py:1", "pkg.b": "pkg/c.py:2"}
    assert part_graph(pkg)["c"] == {"a": "pkg/c.py:1", "b": "pkg/c.py:2"}
    (pkg / "b.py").write_text("def f():\n    pass\n")
    (pkg / "a" / "y.py").write_text("")
    assert cycles(module_graph(pkg)) == []
