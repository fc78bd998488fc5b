"""Rewards: plain functions `(completion, reference) -> float`, no trainer imports.

- `math_reward(completion, answer)`: the final answer, a stated value, vs the reference (math-verify).
- `code_reward(completion, tests)`: runs the program + tests in `dashrl.rewards.sandbox`.
- `reward(example, completion)`: picks one of them by `example.kind` through `REWARDS`.

Importing this package loads only the standard library; math-verify (and sympy) load on the
first math grading, and the sandbox starts processes only when code is graded.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

from dashrl.rewards.code import code_reward, code_rewards, extract_code
from dashrl.rewards.math_grading import extract_answer, math_equal, math_reward


class Example(Protocol):
    """What grading reads of a problem (`dashrl.data.Example` has it): rewards sit below the data
    layer, so they name the fields they need instead of importing the record."""

    answer: str | None
    kind: str
    tests: str | None


def _math(example: "Example", completion: str) -> float:
    return math_reward(completion, example.answer or "")


def _code(example: "Example", completion: str) -> float:
    return code_reward(completion, example.tests or "")


REWARDS: dict[str, Callable[["Example", str], float]] = {"math": _math, "code": _code}


def reward(example: "Example", completion: str) -> float:
    """The reward of one completion for one example, chosen by `example.kind`.

    >>> from dashrl.data import Example
    >>> reward(Example(id="1", problem="1+1?", answer="2"), "It is \\\\boxed{2}.")
    1.0
    """
    if example.kind not in REWARDS:
        raise ValueError(f"unknown example kind {example.kind!r}; valid: {sorted(REWARDS)}")
    return REWARDS[example.kind](example, completion)


def rewards(examples: Sequence["Example"], completions: Sequence[str], timeout: float = 10.0) -> list[float]:
    """Rewards for a batch; code examples run in parallel in the sandbox pool.

    >>> from dashrl.data import Example
    >>> rewards([Example(id="1", problem="?", answer="3")], ["x = \\\\boxed{3}"])
    [1.0]
    """
    if len(examples) != len(completions):
        raise ValueError(f"{len(examples)} examples but {len(completions)} completions")
    out = [0.0] * len(examples)
    code_idx = [i for i, ex in enumerate(examples) if ex.kind == "code"]
    if code_idx:  # the sandbox only when there is code to run
        tests = [examples[i].tests or "" for i in code_idx]
        for i, score in zip(code_idx, code_rewards([completions[i] for i in code_idx], tests, timeout)):
            out[i] = score
    for i, ex in enumerate(examples):
        if ex.kind != "code":
            out[i] = reward(ex, completions[i])
    return out


__all__ = [
    "REWARDS", "code_reward", "code_rewards", "extract_answer", "extract_code", "math_equal",
    "math_reward", "reward", "rewards",
]  # fmt: skip
