"""The config's help, read from the dataclasses' field docstrings: `dashrl config --show`,
`dashrl train --help` and the docs site's configuration reference."""

from __future__ import annotations

from dataclasses import fields
from typing import get_type_hints

from dashrl.config.errors import ConfigError, _suggest
from dashrl.config.loading import _section_types, _toml_value


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under each field of a config dataclass, read from its source, and what
    the class's `help_notes()` adds from a registry (the names a field takes, the algorithms' defaults).

    >>> from dashrl.config import TrainConfig
    >>> field_docs(TrainConfig)["steps"].split(";")[0]
    'Optimizer steps for dash and grpo'
    >>> from dashrl.config import AlgoConfig
    >>> field_docs(AlgoConfig)["kl_estimator"].split("One of: ")[1]
    'k1, k3.'
    """
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, after in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    notes = getattr(cls, "help_notes", None)  # read from a registry (AlgoConfig.help_notes)
    for name, note in (notes() if callable(notes) else {}).items():
        docs[name] = f"{docs.get(name, '')} {note}".strip()
    return docs


def describe_fields(section: str | None = None) -> str:
    """Every field of `section` (or of all sections): `--section.field TYPE = DEFAULT` and its
    docstring, derived from the dataclasses. What `dashrl config --show` prints.

    >>> describe_fields("train").splitlines()[1].split("=")[0].strip()
    '--train.steps INT'
    """
    import textwrap

    types = _section_types()
    if section is not None and section not in types:
        raise ConfigError(f"unknown section {section!r}{_suggest(section, list(types))}")
    out = []
    for sec in [section] if section else list(types):
        cls, defaults = types[sec], types[sec]()
        docs, hints = field_docs(cls), get_type_hints(cls)
        out.append(f"[{sec}]")
        for f in fields(cls):
            out.append(
                f"  --{sec}.{f.name} {hints[f.name].__name__.upper()} = {_toml_value(getattr(defaults, f.name))}"
            )
            out += textwrap.wrap(docs.get(f.name, ""), width=79, initial_indent=" " * 6, subsequent_indent=" " * 6)
        out.append("")
    return "\n".join(out).rstrip()


def sections_summary() -> str:
    """One line per section naming its fields (for `dashrl train --help`)."""
    import textwrap

    return "\n".join(
        textwrap.fill(
            ", ".join(f.name for f in fields(cls)), width=79, initial_indent=f"  {sec:9}", subsequent_indent=" " * 11
        )
        for sec, cls in _section_types().items()
    )
