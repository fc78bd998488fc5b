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

import math
import random
from typing import Any, Sequence

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


class Greso:
    """GRESO's probabilistic skipping over the task's stream, by the rule of the functions above.

    `max_skips` bounds one proposal's walk (a pool where every prompt is skipped would never
    end): past it, prompts are taken as they come.
    """

    def __init__(self, task: Any, per_step: int, seed: int, p_easy: float = 0.5, p_hard: float = 0.5,
                 target: float = 0.25, p_step: float = 0.01, p_lo: float = 0.05, p_hi: float = 0.95,
                 keep_floor: float = 0.01, margin: float = 1.25, max_skips: int = 0):  # fmt: skip
        self.task, self.per_step, self.seed = task, per_step, seed
        self.prompts: dict[str, list[int]] = {}  # id -> [visits, last step, easy run, hard run]
        self._counts = dict.fromkeys(("candidates", "skipped", "skipped_easy", "skipped_hard"), 0)
        self._kinds = dict.fromkeys((EASY, HARD, INFORMATIVE), 0)
        self.p_easy, self.p_hard, self.target = p_easy, p_hard, target
        self.p_step, self.p_lo, self.p_hi, self.keep_floor = p_step, p_lo, p_hi, keep_floor
        self.margin, self.max_skips = margin, max_skips
        self.cursor = 0  # the next stream position to consider
        self.informative_share: float | None = None  # among the groups sampled in the last step

    def skip_chance(self, example_id: str) -> tuple[float, str]:
        """This prompt's skip probability now, and which run it comes from (easy, hard or none)."""
        _, _, easy, hard = self.prompts.get(example_id, [0, -1, 0, 0])
        if easy:
            return skip_probability(self.p_easy, easy, self.keep_floor), EASY
        return skip_probability(self.p_hard, hard, self.keep_floor), HARD if hard else INFORMATIVE

    def propose(self, step: int, n: int) -> tuple[list[Any], int]:
        cap = self.max_skips or 64 * max(n, 1)
        out: list[Any] = []
        skipped = 0
        while len(out) < n:
            i, self.cursor = self.cursor, self.cursor + 1
            ex = self.task.get(i)
            chance, kind = self.skip_chance(ex.id)
            if skipped < cap and random.Random(f"greso:{self.seed}:{step}:{i}").random() < chance:
                skipped += 1
                self._counts[f"skipped_{kind}"] += 1
                continue
            out.append(ex)
        self._counts["candidates"] += len(out) + skipped
        self._counts["skipped"] += skipped
        return out, skipped

    def end_step(self, step: int) -> dict[str, float]:
        sampled = sum(self._kinds.values())
        if sampled:
            self.informative_share = self._kinds[INFORMATIVE] / sampled
            size = self.task.size
            if size and self.cursor > size:  # from the second epoch on, as the authors adapt
                third = self.target / 3
                self.p_easy = adapt(self.p_easy, self._kinds[EASY] / sampled, third, self.p_step, self.p_lo, self.p_hi)
                self.p_hard = adapt(
                    self.p_hard, self._kinds[HARD] / sampled, 2 * third, self.p_step, self.p_lo, self.p_hi
                )
        return {**self._report(), "select/p_easy": self.p_easy, "select/p_hard": self.p_hard}

    def first_round(self, per_step: int, oversample: float) -> int:
        """`oversample` x M until a step has been seen; then M over the informative share of the
        last step's groups, with the authors' margin of 1.25, within [M, 8 M] and at most the size
        of a finite pool (more would sample the same prompts twice in one round)."""
        if self.informative_share is None:
            return math.ceil(per_step * oversample)
        want = math.ceil(per_step / max(self.informative_share, 1 / 8) * self.margin)
        most = min(8 * per_step, self.task.size or 8 * per_step)  # a finite pool: at most one pass of it a round
        return max(min(want, most), per_step)

    def observe(
        self, step: int, examples: Sequence[Any], rewards: Sequence[Sequence[float]], correct: Any = None
    ) -> None:
        for b, ex in enumerate(examples):
            kind = group_kind(list(rewards[b]), list(correct[b]) if correct is not None else None)
            self._kinds[kind] += 1
            visits, _, easy, hard = self.prompts.get(ex.id, [0, -1, 0, 0])
            self.prompts[ex.id] = [visits + 1, step, easy + 1 if kind == EASY else 0, hard + 1 if kind == HARD else 0]

    def _report(self) -> dict[str, float]:
        sampled = sum(self._kinds.values())
        states = [EASY if h[2] else HARD if h[3] else INFORMATIVE for h in self.prompts.values()]
        out = {f"select/{k}": float(v) for k, v in self._counts.items()}
        out["select/zero_variance_share"] = (self._kinds[EASY] + self._kinds[HARD]) / sampled if sampled else 0.0
        out.update({f"select/prompts_{k}": float(states.count(k)) for k in (EASY, HARD, INFORMATIVE)})
        self._counts = dict.fromkeys(self._counts, 0)
        self._kinds = dict.fromkeys(self._kinds, 0)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "prompts": {k: list(v) for k, v in self.prompts.items()},
            "cursor": self.cursor,
            "p_easy": self.p_easy,
            "p_hard": self.p_hard,
            "informative_share": self.informative_share,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = {k: [int(x) for x in v] for k, v in state.get("prompts", {}).items()}
        self.cursor = int(state.get("cursor", 0))
        self.p_easy = float(state.get("p_easy", self.p_easy))
        self.p_hard = float(state.get("p_hard", self.p_hard))
        share = state.get("informative_share")
        self.informative_share = None if share is None else float(share)
