"""The docs site builds with `mkdocs build --strict` (a broken link, a page outside the nav or a
bad cross-reference fails), its configuration page is generated from the config's field
docstrings, and every public name on the API page has a docstring. The build is skipped where
the `docs` extra is not installed; .ci/run installs it."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings_handlers") is None,
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "_hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_mkdocs
def test_mkdocs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True,
                          env={"NO_MKDOCS_2_WARNING": "1", **__import__("os").environ})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    assert "--train.steps" in page and "--task.tests_field" in page
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "reward_funcs" in api and '<span class="gp">&gt;&gt;&gt; </span>' in api  # docstring examples shown as code
    assert "doctest: +SKIP" not in api


def test_the_configuration_page_lists_every_field_with_its_docstring():
    from dashrl.config import Config, field_docs

    text = _hook("config_reference").config_reference()
    for section in dataclasses.fields(Config):
        docs = field_docs(section.default_factory)
        for f in dataclasses.fields(section.default_factory):
            row = next(line for line in text.splitlines() if line.startswith(f"| `--{section.name}.{f.name}` |"))
            assert row.endswith(docs[f.name].replace("|", "\\|") + " |"), row
    assert "| `--train.steps` | int | `30` |" in text


def test_doctest_fences_wrap_examples_only():
    fence = _hook("doctest_fences").fence_examples
    assert fence("Text.\n\n>>> x = 1\n>>> x\n1\n\nMore.") == "Text.\n\n```pycon\n>>> x = 1\n>>> x\n1\n```\n\nMore."
    assert fence("No examples.") == "No examples."
    assert fence(">>> run()  # doctest: +SKIP") == "```pycon\n>>> run()\n```"
    assert fence("    >>> f()\n    2") == "    ```pycon\n    >>> f()\n    2\n    ```"


def test_every_public_name_on_the_api_page_has_a_docstring():
    text = (ROOT / "docs" / "api.md").read_text()
    missing = []
    for target, members in re.findall(
        r"^::: ([\w.]+)\n(?:    options:\n      members: \[([^\]]*)\])?", text, flags=re.M
    ):
        try:
            obj = importlib.import_module(target)
        except ModuleNotFoundError:
            module, _, name = target.rpartition(".")
            obj = getattr(importlib.import_module(module), name)
        names = [m.strip() for m in members.split(",")] if members else None
        if inspect.ismodule(obj):
            public = names or [n for n, v in vars(obj).items() if not n.startswith("_")
                               and (inspect.isfunction(v) or inspect.isclass(v))
                               and v.__module__ == obj.__name__]  # fmt: skip
            objs = {f"{target}.{n}": getattr(obj, n) for n in public}
        else:
            objs = {target: obj}
        missing += [name for name, v in {target: obj, **objs}.items() if not (v.__doc__ or "").strip()]
    assert not missing, f"no docstring: {missing}"
