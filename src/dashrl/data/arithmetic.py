"""A procedural arithmetic task: endless fresh problems at a chosen difficulty.

Problem i of seed s is a pure function of (s, i), so every run, resume and worker
sees the same problems in the same order. Difficulty d draws operands with d digits;
the operation is + or - (and * for d <= 2, where a small model has a chance).
"""

from __future__ import annotations

import random

from dashrl.data import Example
from dashrl.rewards.math_grading import math_reward


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


def integer_reward(completion: str, answer: str) -> float:
    """1.0 when the completion's final answer is the integer `answer`, else 0.0.

    The rule of every math reward, `dashrl.rewards.math_reward`: the final answer is the last
    `\\boxed{}`, else "#### n" or "the answer is n", else the last number in the text (so a small
    model that has not yet learnt the box format still gets a signal for a right result); a
    boxed equation counts by its final side, and a boxed computation (`9 * 3`) is wrong.
    Two integers compare exactly, without the cost of a symbolic check.

    >>> integer_reward("so the sum is \\boxed{1,024}", "1024"), integer_reward("9 * 3 = 27.", "27")
    (1.0, 1.0)
    >>> integer_reward("27 is wrong, it is \\boxed{28}", "27"), integer_reward("no idea", "27")
    (0.0, 0.0)
    >>> integer_reward("\\boxed{9 * 3}", "27"), integer_reward("\\boxed{9 * 3 = 27}", "27")
    (0.0, 1.0)
    """
    return math_reward(completion, answer)
