"""The one metrics accumulator: which numbers add up over parts of a step, which average.

Whoever makes a metric says how it combines: a loss declares its summed metrics in its
`LossOutput` (terms already divided by the whole batch's denominators, `dashrl.algo.Norm`, so
the parts of a batch add up to the batch's loss), and backprop and sampling declare their
counts and times. Every other metric is a per-sample rate, averaged with each part weighted
by its samples. The rule travels with the numbers (under `SUMMED_KEY`), so a step's parts
combine the same way across micro-batches, sampling calls and Ray trainer ranks.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

SUMMED_KEY = "_summed"  # in a metrics dict: the names of its metrics that add up


class Totals:
    """Accumulate metric dicts of parts with `n` samples each; `result()` gives the whole, and
    carries which metrics were summed so that a `Totals` one level up combines it alike.

    >>> t = Totals()
    >>> t.add({"loss": 0.5, "clip_frac": 0.0}, 1, summed={"loss"})
    >>> t.add({"loss": 0.25, "clip_frac": 0.5}, 3, summed={"loss"})
    >>> t.result()
    {'loss': 0.75, 'clip_frac': 0.375, '_summed': ['loss']}
    """

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.summed: set[str] = set()
        self.n = 0

    def add(self, part: Mapping[str, Any], n: int, summed: Iterable[str] = ()) -> None:
        rule = set(summed) | set(part.get(SUMMED_KEY, ()))
        self.summed |= rule
        for k, v in part.items():
            if k != SUMMED_KEY:
                self.sums[k] = self.sums.get(k, 0.0) + (float(v) if k in rule else float(v) * n)
        self.n += n

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: (v if k in self.summed else v / max(self.n, 1)) for k, v in self.sums.items()}
        if self.summed:
            out[SUMMED_KEY] = sorted(self.summed)
        return out
