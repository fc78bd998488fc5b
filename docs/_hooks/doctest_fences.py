"""Griffe extension for the API pages: a docstring's `>>>` examples (with their expected output)
become fenced `pycon` blocks, so the site shows them as code instead of reading `x["a"]` as a
markdown link. The docstrings themselves stay plain doctest text (tests/unit/test_doctests.py)."""

from __future__ import annotations

from typing import Any

import re

import griffe

DIRECTIVE = re.compile(r"\s*# doctest:[^\n]*$")  # `# doctest: +SKIP` is for the test runner, not the reader


def fence_examples(text: str) -> str:
    """Wrap each run of `>>>` lines and the output lines after them (up to a blank line) in a
    fence, without their doctest directives.

    >>> fence_examples("Intro.\\n\\n>>> 1 + 1  # doctest: +SKIP\\n2").splitlines()
    ['Intro.', '', '```pycon', '>>> 1 + 1', '2', '```']
    """
    out: list[str] = []
    fenced = False
    indent = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        if not fenced and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```pycon")
            fenced = True
        elif fenced and not stripped:
            out.append(f"{indent}```")
            fenced = False
        out.append(DIRECTIVE.sub("", line) if fenced else line)
    if fenced:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_examples(obj.docstring.value)
