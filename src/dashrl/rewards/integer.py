"""The procedural tasks' check: the completion's final answer against an integer reference."""

from __future__ import annotations

from dashrl.rewards.math_grading import math_reward


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
