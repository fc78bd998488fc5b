"""Every file and function of src/dashrl fits on a reader's screen (STYLE.md: a file under 500
lines, a function under 60), the loop itself (`dashrl.train.loop._run`) excepted. The import
direction and the absence of cycles are tests/unit/test_import_graph.py's."""

from __future__ import annotations

import ast

from test_import_graph import SRC

MAX_FILE_LINES, MAX_FUNCTION_LINES = 500, 60
EXEMPT = {("train/loop.py", "_run")}  # the one loop: resume, steps, eval, logs, checkpoints, signals, summary


def too_long(src=SRC) -> list[str]:
    found = []
    for path in sorted(src.rglob("*.py")):
        rel = path.relative_to(src).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (rel, node.name) not in EXEMPT:
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    return found


def test_files_and_functions_fit_on_a_screen():
    assert too_long() == []


def test_the_check_finds_a_long_function_and_a_long_file(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("def f():\n" + "    x = 1\n" * 60)
    (pkg / "b.py").write_text("x = 1\n" * 501)
    assert too_long(pkg) == ["a.py:1 f: 61 lines", "b.py: 501 lines"]
