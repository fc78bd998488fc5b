"""A procedural arithmetic task: endless fresh problems at a chosen difficulty.

Problem i of seed s is a pure function of (s, i), so every run, resume and worker
sees the same problems in the same order. Difficulty d draws operands with d digits;
the operation is + or - (and * for d <= 2, where a small model has a chance).
"""

from __future__ import annotations

import random

from dashrl.data import Example
from dashrl.rewards.integer import integer_reward  # noqa: F401 - the procedural tasks' reward, kept importable here


def arithmetic_example(seed: int, index: int, difficulty: int = 2) -> Example:
    """Problem `index` of the stream `seed`.

    >>> arithmetic_example(0, 0, 1).problem
    'What is 9 * 3?'
    """
    rng = random.Random(f"arith:{seed}:{index}:{difficulty}")
    lo, hi = (0 if difficulty == 1 else 10 ** (difficulty - 1)), 10**difficulty - 1
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    ops = ["+", "-", "*"] if difficulty <= 2 else ["+", "-"]
    op = rng.choice(ops)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return Example(
        id=f"arith-{difficulty}-{seed}-{index}",
        problem=f"What is {a} {op} {b}?",
        answer=str(value),
        meta={"dataset": "arithmetic", "level": difficulty, "subject": op},
    )
