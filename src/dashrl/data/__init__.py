"""Datasets and tasks: problems with references, and the prompts built from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One problem with what is needed to grade an answer to it.

    `kind` picks the reward: "math" compares `answer` by equivalence, "code" runs
    `tests` (a self-contained Python script of assertions) against the program.
    `messages` is a chat prompt (a list of `{"role", "content"}` dicts) rendered with the
    model's chat template instead of `problem`; `columns` holds the dataset record's columns,
    which reward functions receive as keywords (`dashrl.rewards.funcs`).
    """

    id: str
    problem: str
    answer: str | None = None
    kind: str = "math"
    tests: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # dataset, subject, level, entry_point, ...
    messages: list[dict[str, str]] | None = None
    columns: dict[str, Any] = field(default_factory=dict)
