"""Prompt selection: which prompts a step samples, chosen before any token is sampled.

A selector walks the task's stream of problems (`Task.get(i)`) and proposes the next prompts;
after sampling it sees each prompt's group of rewards, never the completions. The registry
(`dashrl.select.registry`) is the one list of names (`--select.name`): `uniform`, the default, is
no selector at all (the schedules draw the task's own batches), `greso` is GRESO's skipping
(`dashrl.select.greso`), and a user's own class comes by path (`--select.name my_selector.py:Cls`
or `module:Cls`).

The protocol, in full (`Selector`):

- `propose(step, n) -> (examples, skipped)`: the next `n` prompts to sample in step `step`
  (called again for a refill in the same step), and how many were passed over to find them;
- `observe(step, examples, rewards, correct)`: each sampled group's `G` rewards and the task's own
  check per sample (1.0 right, 0.0 wrong, None unchecked), per example in the order proposed;
- `end_step(step) -> metrics`: once per step after its last `observe`: adapt, and report
  (logged as they are: name them `select/...`);
- `first_round(per_step, oversample) -> int`: how many prompts the first round of a dynamic-
  sampling step draws;
- `state_dict()` / `load_state_dict(state)`: everything that changes, JSON-safe (checkpoints).

A selector is built with the keywords its constructor names among `task`, `per_step`, `seed` and
the `[select]` fields. Its randomness must be a pure function of (seed, step, what it saw), so a
resumed run picks what the unstopped run picked.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Any, Protocol, Sequence

from dashrl.select.registry import SELECTORS

METHODS = ("propose", "observe", "end_step", "first_round", "state_dict", "load_state_dict")


class Selector(Protocol):
    def propose(self, step: int, n: int) -> tuple[list[Any], int]: ...

    def observe(
        self, step: int, examples: Sequence[Any], rewards: Sequence[Sequence[float]], correct: Any = None
    ) -> None: ...

    def end_step(self, step: int) -> dict[str, float]: ...

    def first_round(self, per_step: int, oversample: float) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class SelectError(ValueError):
    """A selector that cannot be built, or that raised during a run; the one-line message names it."""


def selector_class(name: str) -> type | None:
    """The class `select.name` names (None for `uniform`), imported now; a user's class must have
    every method of `Selector`.

    >>> selector_class("greso").__name__, selector_class("uniform")
    ('Greso', None)
    """
    spec = SELECTORS.get(name, name)
    if not spec:
        return None
    if name in SELECTORS:
        module, attr = spec.split(":")
        return getattr(importlib.import_module(module), attr)
    from dashrl.runtime.user_code import UserCodeError, load

    try:
        cls = load(spec, "select.name")
    except UserCodeError as e:
        raise SelectError(str(e)) from None
    missing = [m for m in METHODS if not callable(getattr(cls, m, None))]
    if not inspect.isclass(cls) or missing:
        what = f"lacks {', '.join(missing)}" if missing else "is not a class"
        raise SelectError(f"select.name {name!r}: {what} (a selector has {', '.join(METHODS)}; docs/algorithms.md)")
    return cls


def make_selector(section: Any, task: Any, per_step: int, seed: int) -> Selector | None:
    """The run's selector, or None for `uniform`: built with the keywords its constructor names."""
    cls = selector_class(section.name)
    if cls is None:
        return None
    offered = {"task": task, "per_step": per_step, "seed": seed}
    offered.update({f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name != "name"})
    params = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = offered
    else:
        kwargs = {k: v for k, v in offered.items() if k in params}
    try:
        return Guarded(cls(**kwargs), section.name)
    except Exception as e:  # noqa: BLE001 - the user's constructor: one line, not a traceback
        raise SelectError(f"select.name {section.name!r}: building it raised {type(e).__name__}: {e}") from None


class Guarded:
    """A selector whose faults stop the run in one line naming it, the method and the step."""

    def __init__(self, inner: Any, name: str):
        self.inner, self.name = inner, name

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, method)(*args)
        except Exception as e:  # noqa: BLE001 - any fault of the selector's own code
            cls = type(self.inner).__name__
            raise SelectError(f"select.name {self.name!r}: {cls}.{method} raised {type(e).__name__}: {e}") from e

    def propose(self, step: int, n: int) -> tuple[list[Any], int]:
        return self._call("propose", step, n)

    def observe(self, step: int, examples: Sequence[Any], rewards: Any, correct: Any = None) -> None:
        self._call("observe", step, examples, rewards, correct)

    def end_step(self, step: int) -> dict[str, float]:
        return self._call("end_step", step)

    def first_round(self, per_step: int, oversample: float) -> int:
        return self._call("first_round", per_step, oversample)

    def state_dict(self) -> dict[str, Any]:
        return self._call("state_dict")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._call("load_state_dict", state)
