"""The procedural tasks' check: the completion's final answer against an integer reference."""

from __future__ import annotations

from dashrl.rewards.math_grading import extract_answer


def integer_reward(completion: str, answer: str) -> float:
    """1.0 when the completion's final answer is the integer `answer`, else 0.0.

    The final answer is found by `dashrl.rewards.extract_answer`: the last `\\boxed{}`,
    else "#### n" or "the answer is n", else the last number in the text, so a small
    model that has not yet learnt the box format still gets a signal for a right result.
    Integers compare exactly, without the cost of a symbolic check.

    >>> integer_reward("so the sum is \\boxed{1,024}", "1024"), integer_reward("9 * 3 = 27.", "27")
    (1.0, 1.0)
    >>> integer_reward("27 is wrong, it is \\boxed{28}", "27"), integer_reward("no idea", "27")
    (0.0, 0.0)
    """
    text = (extract_answer(completion) or "").replace(",", "").replace(" ", "").rstrip(".")
    try:
        return 1.0 if int(text) == int(answer) else 0.0
    except ValueError:
        return 0.0
