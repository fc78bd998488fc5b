"""The paper's five findings as tables: pure functions over plain numbers (standard library only).

Input: one `ArmResult` per arm (per-seed evaluations from `dashrl.study.measure` and
per-seed `metrics.jsonl` rows). Output: one `Finding` per claim group, each row with the
paper's claim, our effect with a 95% interval, and a verdict:

- a directional claim ("higher", "shorter") is `reproduced` when the interval lies on the
  claimed side of 0, `contradicted` when on the other side, else `inconclusive`
  (`dashrl.stats.verdict`);
- a claim of no difference ("matches", "unchanged") is `reproduced` when the interval lies
  inside +-`MARGIN` (5 points of accuracy or reward), `contradicted` when wholly outside
  it, else `inconclusive` (`dashrl.stats.equivalence_verdict`);
- an arm that did not run makes its rows `inconclusive`, with the reason.

Intervals: with 3 or more seeds, a Student t interval over the per-seed effects;
otherwise a paired percentile bootstrap over evaluation problems (accuracy, length,
pass@k: every model answers the same problems) or over training steps (the arms of one
seed see the same prompts at each step), or an unpaired bootstrap where nothing pairs
(curve stability, seconds per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dashrl import stats

MARGIN = 0.05  # equivalence margin for "matches" / "unchanged" claims (accuracy or reward)
Rows = list[dict[str, Any]]


@dataclass
class ArmResult:
    name: str
    label: str
    ran: bool = True
    why: str = ""  # why the arm did not run
    evals: list[dict[str, Any]] = field(default_factory=list)  # one per seed
    rows: list[Rows] = field(default_factory=list)  # metrics.jsonl rows, one list per seed
    cut_evals: list[dict[str, Any]] = field(default_factory=list)  # PPO arms read at DASH's wall-clock
    cut_steps: list[int | None] = field(default_factory=list)


@dataclass(frozen=True)
class Effect:
    value: float
    low: float
    high: float
    method: str


@dataclass(frozen=True)
class Claim:
    claim: str  # the paper's claim
    measure: str  # what we measured, as "A - B" of what
    sign: int | None  # +1 / -1 claimed direction, 0 = no difference, None = reported, no claim
    effect: Effect | None
    why: str = ""  # why there is no effect
    paper: str = ""  # the paper's number, when it gives one

    @property
    def verdict(self) -> str:
        if self.sign is None:
            return "n/a (no claim)"
        if self.effect is None:
            return "inconclusive"
        if self.sign == 0:
            return stats.equivalence_verdict(self.effect.low, self.effect.high, MARGIN)
        return stats.verdict(self.effect.low, self.effect.high, self.sign)


@dataclass(frozen=True)
class Finding:
    number: int
    title: str
    paper: str  # the paper's finding, in words
    claims: list[Claim]
    notes: list[str] = field(default_factory=list)


# -- effects ----------------------------------------------------------------------------
def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def paired_effect(a: list[list[float]], b: list[list[float]], unit: str = "problems") -> Effect:
    """mean(a) - mean(b) for items that pair up (a[s][i], b[s][i]: seed s, item i).

    3+ seeds: t interval over the per-seed differences; else paired bootstrap over the
    items, each averaged over the seeds.

    >>> paired_effect([[1, 1, 0, 1]], [[0, 1, 0, 0]]).value
    0.5
    >>> e = paired_effect([[1, 0], [1, 1], [0, 1]], [[0, 0], [0, 1], [0, 0]]); round(e.value, 3), e.method
    (0.5, 't over 3 seeds')
    """
    if len(a) >= 3 and len(a) == len(b):
        m, lo, hi = stats.t_interval([_mean(x) - _mean(y) for x, y in zip(a, b)])
        return Effect(m, lo, hi, f"t over {len(a)} seeds")
    n = min(len(a), len(b))
    xs = [_mean([a[s][i] for s in range(n)]) for i in range(len(a[0]))]
    ys = [_mean([b[s][i] for s in range(n)]) for i in range(len(b[0]))]
    m, lo, hi = stats.paired_bootstrap_diff(xs, ys)
    return Effect(m, lo, hi, f"paired bootstrap, {len(xs)} {unit}")


def unpaired_effect(
    a: list[float], b: list[float], fn: Callable[[Sequence[float], Sequence[float]], float], unit: str
) -> Effect:
    m, lo, hi = stats.bootstrap_two(a, b, fn)
    return Effect(m, lo, hi, f"bootstrap, {len(a)} vs {len(b)} {unit}")


def diff_of_means(x: Sequence[float], y: Sequence[float]) -> float:
    return _mean(x) - _mean(y)


def time_saving(x: Sequence[float], y: Sequence[float]) -> float:
    """1 - mean(x) / mean(y): the share of y's time that x saves (same number of steps).

    >>> time_saving([1.0, 1.0], [4.0, 4.0])
    0.75
    """
    return 1.0 - _mean(x) / _mean(y)


def std_diff(x: Sequence[float], y: Sequence[float]) -> float:
    return stats.sample_std(x) - stats.sample_std(y)


# -- reading metrics rows ------------------------------------------------------------------
def curve(rows: Rows, key: str = "reward/mean") -> list[float]:
    """Values of `key` in step order, one per sampling cycle (PPO arms log sampling metrics
    on a cycle's first optimizer step only), so DASH's step c pairs with PPO's cycle c.

    >>> curve([{"step": 2, "reward/mean": 0.5}, {"step": 1, "reward/mean": 0.25}, {"step": 3}])
    [0.25, 0.5]
    """
    return [float(r[key]) for r in sorted(rows, key=lambda r: r["step"]) if isinstance(r.get(key), (int, float))]


def trained_abs_adv(rows: Rows) -> list[float]:
    """Mean |A| of the samples trained on, per step: `adv/abs_mean` (over all samples) divided
    by the kept fraction. Exact when the filtered samples have A = 0 (a group whose rewards
    are all equal, nearly every sample the 0.01 threshold drops); a step that trained
    nothing gives 0.

    >>> trained_abs_adv([{"step": 1, "adv/abs_mean": 0.3, "filter/kept_frac": 0.5}])
    [0.6]
    """
    out = []
    for r in sorted(rows, key=lambda r: r["step"]):
        if isinstance(r.get("adv/abs_mean"), (int, float)):
            kept = float(r.get("filter/kept_frac", 1.0))
            out.append(float(r["adv/abs_mean"]) / kept if kept > 0 else 0.0)
    return out


def step_seconds(rows: Rows) -> list[float]:
    """Training seconds per sampling cycle (its optimizer steps summed): excludes
    evaluation, checkpoint saves and start-up. Rows are grouped by cycle through the
    sampling metrics each cycle's first row carries."""
    out: list[float] = []
    for r in sorted(rows, key=lambda r: r["step"]):
        if "reward/mean" in r or not out:
            out.append(0.0)
        out[-1] += float(r.get("time/step_s", 0.0))
    return out


def cut_step(rows: Rows, budget: float, k: int = 1) -> int | None:
    """The last optimizer step at a cycle end whose cumulative training time is within
    `budget` seconds (the paper's rule: read a run at DASH's total wall-clock). Cycles
    are `k` optimizer steps (PPO arms save at cycle ends only). None if the first cycle
    alone took longer.

    >>> rows = [{"step": s, "time/step_s": t} for s, t in enumerate([5, 1, 1, 5, 1, 1], start=1)]
    >>> cut_step(rows, budget=13.0, k=3), cut_step(rows, budget=14.0, k=3), cut_step(rows, budget=6.0, k=3)
    (3, 6, None)
    """
    ends = stats.cumulative(float(r.get("time/step_s", 0.0)) for r in sorted(rows, key=lambda r: r["step"]))[k - 1 :: k]
    i = stats.truncate_to_time(ends, budget)
    return None if i is None else (i + 1) * k


# -- per-claim helpers ------------------------------------------------------------------------
def _missing(*arms: ArmResult) -> str:
    return "; ".join(f"{a.label} not run: {a.why or 'no results'}" for a in arms if not a.ran or not a.evals)


def _problems(arm: ArmResult, sets: Sequence[str], what: str = "correct", cut: bool = False) -> list[list[float]]:
    """Per seed, the per-problem values of `what` over `sets` (concatenated)."""
    evals = arm.cut_evals if cut else arm.evals
    return [[float(x) for s in sets for x in e["sets"][s][what]] for e in evals]


def eval_claim(claim: str, measure: str, sign: int | None, a: ArmResult, b: ArmResult, sets: Sequence[str],
               what: str = "correct", cut_a: bool = False, paper: str = "") -> Claim:  # fmt: skip
    """A claim about `a - b` on per-problem `what` (correct or lengths) over `sets`."""
    why = _missing(a, b)
    if not why and cut_a and not a.cut_evals:
        why = f"{a.label} has no checkpoint within DASH's wall-clock"
    if why:
        return Claim(claim, measure, sign, None, why, paper)
    return Claim(
        claim, measure, sign, paired_effect(_problems(a, sets, what, cut_a), _problems(b, sets, what)), paper=paper
    )


def passk_claim(
    claim: str, measure: str, sign: int, a: ArmResult, b: ArmResult, k_lo: str, k_hi: str | None = None
) -> Claim:
    """pass@k_lo of a - b; with `k_hi`, the change of that gap: (a - b)@k_lo - (a - b)@k_hi."""
    why = _missing(a, b)
    if why:
        return Claim(claim, measure, sign, None, why)

    def items(arm: ArmResult) -> list[list[float]]:
        lo = [e["pass_items"][k_lo] for e in arm.evals]
        if k_hi is None:
            return lo
        return [[x - y for x, y in zip(p, e["pass_items"][k_hi])] for p, e in zip(lo, arm.evals)]

    return Claim(claim, measure, sign, paired_effect(items(a), items(b)))


def steps_claim(claim: str, measure: str, sign: int | None, a: ArmResult, b: ArmResult,
                series: Callable[[Rows], list[float]], skip_first: bool = True) -> Claim:  # fmt: skip
    """a - b of a per-step series, paired by step (same prompts); step 1 skipped by default
    (both arms still hold the initial weights there)."""
    why = "; ".join(f"{x.label} not run: {x.why or 'no metrics'}" for x in (a, b) if not x.ran or not x.rows)
    if why:
        return Claim(claim, measure, sign, None, why)
    start = 1 if skip_first else 0
    pairs = [(list(series(ra)), list(series(rb))) for ra, rb in zip(a.rows, b.rows)]
    xs = [p[0][start : min(len(p[0]), len(p[1]))] for p in pairs]
    ys = [p[1][start : min(len(p[0]), len(p[1]))] for p in pairs]
    if not all(xs):
        return Claim(claim, measure, sign, None, "too few steps")
    if len(xs) >= 3:
        return Claim(claim, measure, sign, paired_effect(xs, ys))
    flat_x, flat_y = [v for x in xs for v in x], [v for y in ys for v in y]
    m, lo, hi = stats.paired_bootstrap_diff(flat_x, flat_y)
    return Claim(claim, measure, sign, Effect(m, lo, hi, f"paired bootstrap, {len(flat_x)} steps"))


def pooled_claim(claim: str, measure: str, sign: int | None, a: ArmResult, b: ArmResult,
                 series: Callable[[Rows], list[float]], fn: Callable[[Sequence[float], Sequence[float]], float],
                 unit: str, paper: str = "") -> Claim:  # fmt: skip
    """fn(a's series, b's series) over all seeds' values pooled, unpaired bootstrap."""
    why = "; ".join(f"{x.label} not run: {x.why or 'no metrics'}" for x in (a, b) if not x.ran or not x.rows)
    if why:
        return Claim(claim, measure, sign, None, why, paper)
    xs, ys = [v for r in a.rows for v in series(r)], [v for r in b.rows for v in series(r)]
    if len(xs) < 2 or len(ys) < 2:
        return Claim(claim, measure, sign, None, "too few steps", paper)
    return Claim(claim, measure, sign, unpaired_effect(xs, ys, fn, unit), paper=paper)


def changes(values: list[float]) -> list[float]:
    """Step-to-step changes v[t] - v[t-1] (what `stats.curve_stability` summarises).

    >>> changes([0.1, 0.4, 0.2])
    [0.30000000000000004, -0.2]
    """
    return [b - x for x, b in zip(values, values[1:])]


def stability_note(arm: ArmResult) -> str:
    vals = [stats.curve_stability(c) for c in (curve(r) for r in arm.rows) if len(c) >= 3]
    if not vals:
        return f"{arm.label}: fewer than 3 steps"
    std = _mean([v["step_change_std"] for v in vals])
    drop = max(v["largest_drop"] for v in vals)
    return f"{arm.label}: step-change std {std:.3f}, largest drop {drop:.3f}"
