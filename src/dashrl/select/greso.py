"""GRESO (Zheng et al. 2025, "Act Only When It Pays", arXiv 2506.02177): skip, before sampling,
the prompts whose recent groups taught nothing. Standard library only.

A group is zero-variance when its G rewards are all equal: all right (easy) or all wrong (hard).
Its advantages are then 0 and DASH's filter or DAPO's dynamic sampling throws its rollouts away
after paying for them. Rewards of a prompt are consistent over epochs, so GRESO predicts them:

- a prompt whose last `k` visits were all easy (or all hard) in a row is skipped with probability
  `1 - max(p ** k, keep_floor)`, with `p = p_easy` (or `p_hard`); one informative visit resets
  its streak, and the floor keeps every prompt a small chance of coming back;
- after every step of the second epoch on, `p` moves by `p_step` towards a target share of
  zero-variance groups among those sampled: down (skip more) while the share of easy (hard)
  groups is at or above `target_easy` (`target_hard`), up otherwise, within `[p_lo, p_hi]`.

The defaults are those of the authors' released runs: `p_easy = p_hard = 0.5` at the start, a
zero-variance target of 0.25 split one third easy and two thirds hard (hard prompts are the more
likely to turn, as the model improves), steps of 0.01 within [0.05, 0.95], and a floor of 0.01
on the keep probability.
"""

from __future__ import annotations

EASY, HARD, INFORMATIVE = "easy", "hard", "informative"


def group_kind(rewards: list[float], correct: list[float | None] | None = None) -> str:
    """`easy`, `hard` or `informative`: what one group's G rewards make of it. With the task's
    own check (`correct`, 1.0 = right) a zero-variance group is easy when every answer is right;
    without one, when its common reward is at least 1.

    >>> group_kind([1.0, 1.0]), group_kind([0.0, 0.0]), group_kind([1.0, 0.0])
    ('easy', 'hard', 'informative')
    >>> group_kind([0.2, 0.2], correct=[1.0, 1.0]), group_kind([0.2, 0.2])
    ('easy', 'hard')
    """
    if max(rewards) != min(rewards):
        return INFORMATIVE
    if correct is not None and all(c is not None for c in correct):
        return EASY if all(c >= 1.0 for c in correct) else HARD
    return EASY if rewards[0] >= 1.0 else HARD


def skip_probability(p: float, streak: int, keep_floor: float) -> float:
    """`1 - max(p ** streak, keep_floor)`: 0 for a prompt without a streak.

    >>> [round(skip_probability(0.5, k, 0.01), 4) for k in (0, 1, 2, 3, 7)]
    [0.0, 0.5, 0.75, 0.875, 0.99]
    """
    return 0.0 if streak <= 0 else 1.0 - max(p**streak, keep_floor)


def adapt(p: float, share: float, target: float, step: float, lo: float, hi: float) -> float:
    """The next `p`: lower (skip more) while the zero-variance `share` is at or above `target`.

    >>> adapt(0.5, 0.3, 0.25, 0.01, 0.05, 0.95), adapt(0.5, 0.1, 0.25, 0.01, 0.05, 0.95)
    (0.49, 0.51)
    >>> adapt(0.05, 0.9, 0.25, 0.01, 0.05, 0.95)
    0.05
    """
    moved = p - step if share >= target else p + step
    return round(min(max(moved, lo), hi), 10)  # rounded: p is checkpointed and compared bit for bit
