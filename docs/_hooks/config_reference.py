"""mkdocs hook: the configuration reference page, generated at build time from the config
dataclasses of `dashrl.config` (each field's docstring is its only help text), so the page
cannot drift from what `--section.field` accepts. Nothing is written into docs/.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, get_type_hints

ROOT = Path(__file__).resolve().parents[2]
PAGE = "reference/config.md"

INTRO = """# Configuration reference

Every run is one `Config`: the sections below, each a typed dataclass. A field is set on the
command line as `--section.field VALUE`, in a TOML run file under `[section]`, or from Python as
`dashrl.train({"section.field": value})`. `dashrl config --show SECTION` prints the same listing
in a terminal, and `dashrl config --toml` prints the defaults as a run file to start from.

This page is generated from the dataclasses' field docstrings when the site is built.
"""


def _default(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def config_reference() -> str:
    """The page's markdown: one table per section, in the order of `Config`'s fields."""
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))
    from dashrl.config import Config, field_docs

    out = [INTRO]
    for section in dataclasses.fields(Config):
        cls = section.default_factory  # type: ignore[misc]
        defaults, docs, hints = cls(), field_docs(cls), get_type_hints(cls)
        out.append(f"## `[{section.name}]`\n")
        if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
            out.append(" ".join(cls.__doc__.split()) + "\n")
        out.append("| field | type | default | what it does |\n|---|---|---|---|")
        for f in dataclasses.fields(cls):
            doc = docs.get(f.name)
            if not doc:
                raise ValueError(f"config field {section.name}.{f.name} has no docstring")
            kind = getattr(hints[f.name], "__name__", str(hints[f.name]))
            out.append(f"| `--{section.name}.{f.name}` | {kind} | `{_cell(_default(getattr(defaults, f.name)))}` | {_cell(doc)} |")
        out.append("")
    return "\n".join(out)


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=config_reference()))
    return files
