"""Prompt selection: which prompts a step samples, chosen before any token is sampled.

A selector walks the task's stream of problems (`Task.get(i)`) and proposes the next prompts;
after sampling it sees each prompt's group of rewards, never the completions. The registry below
is the one list of names (`--select.name`); a user's own selector comes by path
(`--select.name my_selector.py:MySelector` or `module:Class`).

The protocol, in full (`Selector`):

- `propose(step, n) -> (examples, skipped)`: the next `n` prompts to sample in step `step`
  (called again for a refill in the same step), and how many were passed over to find them;
- `observe(step, examples, rewards, correct)`: each sampled group's `G` rewards (and the task's
  own check, or None), per example in the order proposed;
- `end_step(step) -> metrics`: called once per step after its last `observe`: adapt, and report;
- `first_round(per_step, oversample) -> int`: prompts the first round of a dynamic-sampling
  step draws, from what the selector expects to be informative;
- `state_dict()` / `load_state_dict(state)`: everything that changes, JSON-safe (checkpoints).

Randomness is a pure function of (seed, step, stream position): a resumed run skips what the
unstopped run skipped.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

SELECTORS: dict[str, str] = {  # name -> "module:Class", imported when built
    "uniform": "dashrl.select.stream:Uniform",
    "greso": "dashrl.select.stream:Greso",
}


class Selector(Protocol):
    def propose(self, step: int, n: int) -> tuple[list[Any], int]: ...

    def observe(
        self, step: int, examples: Sequence[Any], rewards: Sequence[Sequence[float]], correct: Any = None
    ) -> None: ...

    def end_step(self, step: int) -> dict[str, float]: ...

    def first_round(self, per_step: int, oversample: float) -> int: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
