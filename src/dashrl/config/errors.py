"""The config's one error type and the checks every section's validation uses."""

from __future__ import annotations

import difflib
from typing import Sequence


class ConfigError(ValueError):
    """A config key, type or value is wrong; the message says which and what was expected."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config {key}: {msg}")


def _at_least(key: str, value: float, low: float) -> None:
    _check(value >= low, key, f"expected >= {low}, got {value}")


def _choice(key: str, value: str, options: Sequence[str]) -> None:
    """Fail unless `value` is one of `options`, naming them all and the closest one."""
    if value not in options:
        swapped = [o for o in options if sorted(o) == sorted(str(value))]  # two letters swapped: gpro -> grpo
        close = swapped or difflib.get_close_matches(str(value), options, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"config {key}: expected one of {', '.join(options)}, got {value!r}{hint}")


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(options))}"
