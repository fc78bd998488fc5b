"""A user's object named by path, as `--reward.funcs` and `--algo.loss` take one:
`path/to/file.py:name` or `package.module:name`. Standard library only.

`check(spec, what)` looks without running anything (the file exists, parses and binds the
name; the module's top-level package is installed), for a config to check at load without
importing torch; `load(spec, what)` imports it. Both fail with `UserCodeError`, one line that
starts with `{what} {spec!r}:` and says what is wrong.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any


class UserCodeError(ValueError):
    """A user's file or module that cannot give the object named; the one-line message says why."""


def split(spec: str) -> tuple[str, str, bool]:
    """`(target, name, is_file)` of `target:name`; a target ending in `.py` or holding a path
    separator is a file.

    >>> split("my_loss.py:Clipped"), split("pkg.mod:f")
    (('my_loss.py', 'Clipped', True), ('pkg.mod', 'f', False))
    """
    target, _, name = spec.strip().rpartition(":")
    return target, name, target.endswith(".py") or os.sep in target


def check(spec: str, what: str) -> None:
    """Fail unless `spec` can plausibly give its object, running none of its code.

    >>> check("os.path:basename", "loss")
    >>> check("nope.py:f", "loss")
    Traceback (most recent call last):
    ...
    dashrl.runtime.user_code.UserCodeError: loss 'nope.py:f': no such file nope.py
    """
    target, name, is_file = split(spec)
    if not target or not name.isidentifier():
        raise UserCodeError(f"{what} {spec!r}: expected path/to/file.py:name or module:name")
    if not is_file:
        top = target.split(".")[0]
        if importlib.util.find_spec(top) is None:  # the top level only: finding a submodule imports its package
            raise UserCodeError(f"{what} {spec!r}: no module named {top!r}")
        return
    file = Path(target).expanduser()
    if not file.is_file():
        raise UserCodeError(f"{what} {spec!r}: no such file {file}")
    try:
        tree = ast.parse(file.read_bytes(), str(file))
    except (SyntaxError, ValueError) as e:
        where = f"{file}:{getattr(e, 'lineno', '?')}"
        raise UserCodeError(f"{what} {spec!r}: {where}: syntax error: {getattr(e, 'msg', e)}") from None
    names = _bound_names(tree)
    if name not in names and "*" not in names:
        raise UserCodeError(f"{what} {spec!r}: {file} defines no {name!r}")


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds anywhere (classes, functions, assignments, imports; `*` for `import *`):
    lenient, so a name bound under an `if` passes here and the import decides."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return names


def load(spec: str, what: str) -> Any:
    """The object `spec` names, imported now. A file runs as a module kept out of `sys.modules`
    afterwards, so what it defines pickles by value (Ray actors get it without the file).

    >>> load("os.path:basename", "reward function")("a/b.py")
    'b.py'
    """
    target, name, is_file = split(spec)
    if is_file:
        module = _run_file(Path(target).expanduser(), spec, what)
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:  # noqa: BLE001 - user code: any error becomes one line
            raise UserCodeError(f"{what} {spec!r}: cannot import {target!r}: {type(e).__name__}: {e}") from None
    obj = getattr(module, name, None)
    if obj is None:
        raise UserCodeError(f"{what} {spec!r}: {target} has no attribute {name!r}")
    return obj


def _run_file(file: Path, spec: str, what: str) -> Any:
    if not file.is_file():
        raise UserCodeError(f"{what} {spec!r}: no such file {file}")
    name = f"dashrl_user_{abs(hash(str(file.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    sys.modules[name] = module  # while it runs: dataclasses and the like look their module up
    try:
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as e:  # noqa: BLE001 - user code: any error becomes one line
        raise UserCodeError(f"{what} {spec!r}: importing {file} failed: {type(e).__name__}: {e}") from None
    finally:  # not importable elsewhere: out of sys.modules, its objects pickle by value (Ray actors)
        sys.modules.pop(name, None)
    return module
