"""The shipped selectors: `uniform` (the task's order, today's behaviour) and `greso`.

Both walk the task's stream and keep each prompt's history: visits, the step of the last one,
and its current run of easy or hard (zero-variance) groups. `uniform` proposes exactly the
prompts a run without selection samples (`Task.batch`, then `prompt_index` for refills), so a
run with it is bit-identical to one without; `greso` walks the stream from a cursor and passes
over the prompts its rule skips (`dashrl.select.greso`).
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

from dashrl.select.greso import EASY, HARD, INFORMATIVE, adapt, group_kind, skip_probability

EXTRA_BASE = 1 << 44  # the stream region refills draw from, beyond any step's batch
EXTRA_STRIDE = 1 << 20  # extra prompts one step may draw


def prompt_index(step: int, j: int, per_step: int) -> int:
    """The task index of the `j`-th prompt step `step` draws without selection: the first
    `per_step` are the step's batch (`Task.batch(step, per_step)`), the extras come from a region
    of the stream no step's batch reaches, so the problems stay a pure function of (seed, step, round).

    >>> prompt_index(3, 1, 8), prompt_index(3, 8, 8) - prompt_index(2, 8, 8)
    (25, 1048576)
    """
    if j < per_step:
        return step * per_step + j
    return EXTRA_BASE + step * EXTRA_STRIDE + (j - per_step)


class _History:
    """Per-prompt history and this step's counts, shared by the selectors."""

    def __init__(self, task: Any, per_step: int, seed: int):
        self.task, self.per_step, self.seed = task, per_step, seed
        self.prompts: dict[str, list[int]] = {}  # id -> [visits, last step, easy run, hard run]
        self._step, self._drawn = -1, 0
        self._counts = dict.fromkeys(("candidates", "skipped", "skipped_easy", "skipped_hard"), 0)
        self._kinds = dict.fromkeys((EASY, HARD, INFORMATIVE), 0)

    def _begin(self, step: int) -> None:
        if step != self._step:
            self._step = step
            self._drawn = 0

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
        return {"prompts": {k: list(v) for k, v in self.prompts.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts = {k: [int(x) for x in v] for k, v in state.get("prompts", {}).items()}


class Uniform(_History):
    """The task's own order: step s samples `Task.batch(s, M)`, a refill the extras of `prompt_index`."""

    def propose(self, step: int, n: int) -> tuple[list[Any], int]:
        self._begin(step)
        js = range(self._drawn, self._drawn + n)
        self._drawn += n
        self._counts["candidates"] += n
        return [self.task.get(prompt_index(step, j, self.per_step)) for j in js], 0

    def end_step(self, step: int) -> dict[str, float]:
        return self._report()

    def first_round(self, per_step: int, oversample: float) -> int:
        return math.ceil(per_step * oversample)


class Greso(_History):
    """GRESO's probabilistic skipping over the task's stream (`dashrl.select.greso` has the rule).

    `max_skips` bounds one proposal's walk (a pool where every prompt is skipped would never
    end): past it, prompts are taken as they come.
    """

    def __init__(self, task: Any, per_step: int, seed: int, p_easy: float = 0.5, p_hard: float = 0.5,
                 target: float = 0.25, p_step: float = 0.01, p_lo: float = 0.05, p_hi: float = 0.95,
                 keep_floor: float = 0.01, margin: float = 1.25, max_skips: int = 0):  # fmt: skip
        super().__init__(task, per_step, seed)
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
        self._begin(step)
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
        last step's groups, with the authors' margin of 1.25, within [M, 8 M]."""
        if self.informative_share is None:
            return math.ceil(per_step * oversample)
        want = per_step / max(self.informative_share, 1 / 8) * self.margin
        return min(max(math.ceil(want), per_step), 8 * per_step)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "cursor": self.cursor, "p_easy": self.p_easy, "p_hard": self.p_hard,
                "informative_share": self.informative_share}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.cursor = int(state.get("cursor", 0))
        self.p_easy = float(state.get("p_easy", self.p_easy))
        self.p_hard = float(state.get("p_hard", self.p_hard))
        share = state.get("informative_share")
        self.informative_share = None if share is None else float(share)
