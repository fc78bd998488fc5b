"""The one metrics accumulator: which numbers add up over parts of a step, which average.

Loss terms are already divided by the whole batch's denominators (`dashrl.algo.Norm`),
so the parts of a batch add up to the batch's loss; counts, times and restarts add too. Every
other metric is a per-sample rate, averaged with each part weighted by its samples.
"""

from __future__ import annotations

from typing import Mapping

SUMMED = frozenset({"loss", "loss/policy", "kl", "train/tokens", "train/samples", "nonfinite", "gen/sampled_tokens"})


def is_summed(key: str) -> bool:
    """True for metrics that add up over the parts of a batch.

    >>> is_summed("loss"), is_summed("time/backprop_s"), is_summed("clip_frac")
    (True, True, False)
    """
    return key in SUMMED or key.startswith("time/") or key.endswith("_restarts")


class Totals:
    """Accumulate metric dicts of parts with `n` samples each; `result()` gives the whole.

    >>> t = Totals()
    >>> t.add({"loss": 0.5, "clip_frac": 0.0}, 1)
    >>> t.add({"loss": 0.25, "clip_frac": 0.5}, 3)
    >>> t.result()
    {'loss': 0.75, 'clip_frac': 0.375}
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.n = 0

    def add(self, part: Mapping[str, float], n: int) -> None:
        for k, v in part.items():
            self.sums[k] = self.sums.get(k, 0.0) + (float(v) if is_summed(k) else float(v) * n)
        self.n += n

    def result(self) -> dict[str, float]:
        return {k: (v if is_summed(k) else v / max(self.n, 1)) for k, v in self.sums.items()}
