"""Statistics behind the study's verdicts: pure functions over plain numbers (standard library only).

- `truncate_to_time`: the paper's rule for comparing at equal wall-clock: read a run at its
  last step that finished within another run's total time.
- `curve_stability`: how unstable a training curve is, as numbers (finding 2), not a look:
  the standard deviation of step-to-step changes and the largest single drop.
- `bootstrap_ci` / `paired_bootstrap_diff`: percentile bootstrap over evaluation problems.
- `verdict`: reproduced / contradicted / inconclusive from an interval and the sign the
  paper claims.
"""

from __future__ import annotations

import math
import random
from typing import Callable, Sequence


def cumulative(seconds: Sequence[float]) -> list[float]:
    """Running sums: wall-clock time at the end of each step from per-step seconds.

    >>> cumulative([1.5, 2.0, 0.5])
    [1.5, 3.5, 4.0]
    """
    out, total = [], 0.0
    for s in seconds:
        total += float(s)
        out.append(total)
    return out


def truncate_to_time(elapsed: Sequence[float], budget: float) -> int | None:
    """Index of the last step whose cumulative wall-clock `elapsed[i]` is <= `budget`.

    `elapsed` is non-decreasing (seconds since the run started, at each step's end). None
    when even the first step took longer than the budget.

    >>> truncate_to_time([10.0, 20.0, 30.0, 40.0], 35.0), truncate_to_time([10.0, 20.0], 20.0)
    (2, 1)
    >>> truncate_to_time([10.0], 9.9) is None
    True
    """
    if any(b < a for a, b in zip(elapsed, elapsed[1:])):
        raise ValueError("elapsed times must be non-decreasing")
    last = None
    for i, t in enumerate(elapsed):
        if t > budget:
            break
        last = i
    return last


def curve_stability(values: Sequence[float]) -> dict[str, float]:
    """Step-to-step change statistics of a curve (e.g. mean reward per step).

    `step_change_std`: sample standard deviation of the changes v[t] - v[t-1];
    `largest_drop`: the largest single decrease v[t-1] - v[t] (0 if the curve never falls).

    >>> curve_stability([0.1, 0.3, 0.2, 0.6])  # changes 0.2, -0.1, 0.4
    {'step_change_std': 0.25166114784235827, 'largest_drop': 0.09999999999999998}
    """
    if len(values) < 3:
        raise ValueError(f"curve_stability needs at least 3 points, got {len(values)}")
    changes = [b - a for a, b in zip(values, values[1:])]
    mean = sum(changes) / len(changes)
    std = math.sqrt(sum((c - mean) ** 2 for c in changes) / (len(changes) - 1))
    return {"step_change_std": std, "largest_drop": max(0.0, -min(changes))}


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _percentiles(samples: list[float], alpha: float) -> tuple[float, float]:
    samples = sorted(samples)
    lo = samples[int(math.floor(alpha / 2 * (len(samples) - 1)))]
    hi = samples[int(math.ceil((1 - alpha / 2) * (len(samples) - 1)))]
    return lo, hi


def bootstrap_ci(
    values: Sequence[float], *, stat: Callable[[Sequence[float]], float] = _mean, n_boot: int = 2000,
    alpha: float = 0.05, seed: int = 0,
) -> tuple[float, float, float]:  # fmt: skip
    """(statistic, low, high): percentile bootstrap interval over the items of `values`.

    >>> bootstrap_ci([1.0] * 10)
    (1.0, 1.0, 1.0)
    """
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = random.Random(seed)
    n = len(values)
    boots = [stat([values[rng.randrange(n)] for _ in range(n)]) for _ in range(n_boot)]
    return (stat(values), *_percentiles(boots, alpha))


def paired_bootstrap_diff(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high), resampling problems jointly: `a[i]`, `b[i]` are two arms'
    scores on the same problem i, so problem difficulty cancels out.

    >>> paired_bootstrap_diff([1.0, 1.0, 0.0], [0.0, 1.0, 0.0])[0]
    0.3333333333333333
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired scores need equal, non-zero lengths, got {len(a)} and {len(b)}")
    return bootstrap_ci([x - y for x, y in zip(a, b)], n_boot=n_boot, alpha=alpha, seed=seed)


def verdict(low: float, high: float, claimed_sign: int) -> str:
    """`reproduced` if the interval lies on the claimed side of 0, `contradicted` if on the other,
    `inconclusive` if it contains 0.

    >>> verdict(0.02, 0.10, +1), verdict(-0.3, -0.1, +1), verdict(-0.1, 0.2, -1)
    ('reproduced', 'contradicted', 'inconclusive')
    """
    if claimed_sign not in (1, -1):
        raise ValueError(f"claimed_sign must be +1 or -1, got {claimed_sign}")
    if low > high:
        raise ValueError(f"low {low} > high {high}")
    lo, hi = (low, high) if claimed_sign == 1 else (-high, -low)
    return "reproduced" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"


def bootstrap_two(
    a: Sequence[float], b: Sequence[float], fn: Callable[[Sequence[float], Sequence[float]], float], *,
    n_boot: int = 2000, alpha: float = 0.05, seed: int = 0,
) -> tuple[float, float, float]:  # fmt: skip
    """(fn(a, b), low, high), resampling `a` and `b` independently: for two arms whose
    items do not pair up (different steps, different lengths).

    >>> bootstrap_two([2.0, 2.0], [1.0, 1.0, 1.0], lambda x, y: _mean(x) - _mean(y))
    (1.0, 1.0, 1.0)
    """
    if not a or not b:
        raise ValueError(f"bootstrap_two needs two non-empty samples, got {len(a)} and {len(b)}")
    rng = random.Random(seed)
    boots = [fn([a[rng.randrange(len(a))] for _ in a], [b[rng.randrange(len(b))] for _ in b]) for _ in range(n_boot)]
    return (fn(a, b), *_percentiles(boots, alpha))


def sample_std(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for fewer than 2 values).

    >>> sample_std([1.0, 3.0])
    1.4142135623730951
    """
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


# Two-sided 95% Student t quantiles t_{0.975, df} for df = 1..30 (beyond: the normal 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the 95% Student t interval of a mean, e.g. over per-seed effects.

    >>> [round(x, 3) for x in t_interval([0.1, 0.2, 0.3])]  # sd 0.1, t(2) = 4.303
    [0.2, -0.048, 0.448]
    """
    n = len(values)
    if n < 2:
        raise ValueError(f"t_interval needs at least 2 values, got {n}")
    m, sd = _mean(values), sample_std(values)
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / math.sqrt(n)
    return m, m - half, m + half


def equivalence_verdict(low: float, high: float, margin: float) -> str:
    """For a claim of *no difference* ("matches", "unchanged"): `reproduced` if the interval
    lies inside [-margin, margin], `contradicted` if it lies wholly outside it, else
    `inconclusive`.

    >>> (equivalence_verdict(-0.02, 0.03, 0.05), equivalence_verdict(0.06, 0.2, 0.05),
    ...  equivalence_verdict(-0.1, 0.02, 0.05))
    ('reproduced', 'contradicted', 'inconclusive')
    """
    if margin <= 0 or low > high:
        raise ValueError(f"need margin > 0 and low <= high, got margin {margin}, [{low}, {high}]")
    if -margin <= low and high <= margin:
        return "reproduced"
    return "contradicted" if low > margin or high < -margin else "inconclusive"
