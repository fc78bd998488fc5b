"""Code reward: take the program out of a completion and run the tests on it in the sandbox.

The program is the last fenced ```python (or ```py / plain ```) block; an unclosed final fence
(a completion cut at max_new_tokens) counts up to the end of the text; with no fence at all the
whole completion is the program. All execution goes through `dashrl.rewards.sandbox`.
"""

from __future__ import annotations

import re
from typing import Sequence

from dashrl.rewards.sandbox import Limits, RunResult, run_many

_FENCE_RE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(completion: str) -> str:
    """The program in a completion: the last fenced code block, else the whole text.

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    """
    blocks = _FENCE_RE.findall(completion or "")
    return blocks[-1] if blocks else (completion or "")


def _score(result: RunResult, partial: bool) -> float:
    if partial:
        return result.passed / result.total if result.total else 0.0
    return 1.0 if result.status == "passed" else 0.0


def code_rewards(
    completions: Sequence[str],
    tests: Sequence[str],
    timeout: float = 10.0,
    partial: bool = False,
    *,
    workers: int | None = None,
    limits: Limits | None = None,
) -> list[float]:
    """Rewards for many (completion, tests) pairs, run in parallel through the sandbox pool.

    >>> code_rewards(["```python\\nx = 1\\n```", "x = 2"], ["assert x == 1"] * 2)
    [1.0, 0.0]
    """
    if len(completions) != len(tests):
        raise ValueError(f"{len(completions)} completions but {len(tests)} test scripts")
    limits = limits or Limits(timeout=timeout)
    jobs = [(extract_code(c), t) for c, t in zip(completions, tests)]
    return [_score(r, partial) for r in run_many(jobs, limits, workers=workers)]


def code_reward(completion: str, tests: str, timeout: float = 10.0, partial: bool = False) -> float:
    """1.0 if the program in `completion` passes every check in `tests`, else 0.0.

    With `partial=True`: the fraction of checks passed (each top-level `assert` of `tests` is
    one check; see `dashrl.rewards._harness` for how other statements count).

    >>> code_reward("```python\\ndef add(a, b):\\n    return a + b\\n```", "assert add(1, 2) == 3")
    1.0
    """
    return code_rewards([completion], [tests], timeout, partial)[0]
