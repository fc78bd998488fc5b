"""`dashrl bench --ttr`'s probe of TRL's configurations on the machine in hand.

TRL's side of a time-to-reward comparison runs with the fastest configuration the probe finds:

1. each per-device train batch of `--trl-batches` that divides a step's samples (gradient
   accumulation keeps every optimizer step at the step's samples);
2. then, at the fastest of those, each generation option of `--trl-options` (TRL 1.16's
   `GRPOConfig` fields: transformers' continuous batching engine, a static KV cache).

Each candidate trains `PROBE_STEPS` steps in a process of its own (`dashrl.peers.trl_task`) and is
timed from the end of its first step to the end of the last, so TRL's first calls are left out
(`dashrl.bench.runs.trl_probe_seconds`, which this module leaves to its caller).
A candidate that fails on this machine (an option the device does not support) is kept in the
table as failed, with its log, and never chosen. A single candidate is taken without timing it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

PROBE_STEPS = 3  # steps per probed TRL configuration: the first (TRL's first calls) and two to time
# TRL 1.16 generation options the probe tries at the fastest per-device batch (GRPOConfig fields)
TRL_OPTIONS: dict[str, dict[str, Any]] = {
    "continuous_batching": {"use_transformers_continuous_batching": True},
    "static_cache": {"cache_implementation": "static"},
}


@dataclass(frozen=True)
class TRLSetting:
    """One TRL configuration: a per-device train batch and a generation option ("" for TRL's default).

    >>> s = TRLSetting(8, "continuous_batching")
    >>> s.label
    '8 + continuous_batching'
    >>> s.flags()
    ['--train.micro_batch_size', '8', '--trl-option', 'use_transformers_continuous_batching=true']
    """

    batch: int
    option: str = ""

    @property
    def label(self) -> str:
        return f"{self.batch}" + (f" + {self.option}" if self.option else "")

    def flags(self) -> list[str]:
        """`dashrl.peers.trl_task`'s flags for this setting."""
        out = ["--train.micro_batch_size", str(self.batch)]
        for key, value in TRL_OPTIONS.get(self.option, {}).items():
            out += ["--trl-option", f"{key}={json.dumps(value)}"]
        return out


def trl_batch_candidates(samples_per_step: int, spec: str) -> list[int]:
    """The per-device batch sizes of `spec` (comma-separated) that divide a step's samples, so that
    gradient accumulation keeps every optimizer step at `samples_per_step` samples.

    >>> trl_batch_candidates(64, "8,16,32,64"), trl_batch_candidates(48, "8,16,32,64")
    ([8, 16, 32, 64], [8, 16])
    """
    try:
        sizes = [int(b) for b in spec.split(",") if b.strip()]
    except ValueError:
        raise ValueError(f"--trl-batches: expected comma-separated integers, got {spec!r}") from None
    fits = [b for b in sizes if b > 0 and samples_per_step % b == 0]
    if not fits:
        raise ValueError(f"--trl-batches {spec}: none divides a step's {samples_per_step} samples")
    return fits


def trl_option_names(spec: str) -> list[str]:
    """The generation options of `--trl-options` ("none" or "" for none); an unknown one is a ValueError.

    >>> trl_option_names("static_cache, continuous_batching"), trl_option_names("none")
    (['static_cache', 'continuous_batching'], [])
    """
    names = [o.strip() for o in spec.split(",") if o.strip() and o.strip() != "none"]
    unknown = [o for o in names if o not in TRL_OPTIONS]
    if unknown:
        raise ValueError(f"--trl-options: unknown option {unknown[0]!r}; valid: {', '.join(TRL_OPTIONS)}, none")
    return names


def probe_trl(
    batches: Sequence[int], options: Sequence[str], seconds_per_step: Callable[[TRLSetting], float]
) -> tuple[TRLSetting, dict[str, float]]:
    """The fastest TRL setting and every candidate's seconds per step, by label (NaN: it failed).
    The batches are timed first, then each option at the fastest batch; of equal times the earlier
    candidate wins (the smaller batch, TRL's default generation). A single candidate is not timed.

    >>> times = {"8": 3.0, "16": 2.0, "16 + static_cache": 2.5, "16 + continuous_batching": float("nan")}
    >>> chosen, timed = probe_trl([8, 16], ["continuous_batching", "static_cache"], lambda s: times[s.label])
    >>> chosen, list(timed)
    (TRLSetting(batch=16, option=''), ['8', '16', '16 + continuous_batching', '16 + static_cache'])
    >>> probe_trl([8], [], lambda s: 1 / 0)
    (TRLSetting(batch=8, option=''), {})
    """
    candidates = [TRLSetting(b) for b in batches]
    if len(candidates) == 1 and not options:
        return candidates[0], {}
    timed = {s: seconds_per_step(s) for s in candidates}
    best = _fastest(timed)
    timed.update({(s := TRLSetting(best.batch, o)): seconds_per_step(s) for o in options})
    return _fastest(timed), {s.label: t for s, t in timed.items()}


def _fastest(timed: dict[TRLSetting, float]) -> TRLSetting:
    ok = [s for s, t in timed.items() if not math.isnan(t)]
    if not ok:
        raise ValueError("every probed TRL configuration failed; see the probe-trl-*.log files")
    return min(ok, key=lambda s: timed[s])  # min keeps the first of equal ones


def probe_table(timed: dict[str, float], samples_per_step: int, chosen: TRLSetting) -> str:
    """The probe's markdown table: setting, accumulation steps, seconds per step, the choice.

    >>> print(probe_table({"8": 3.0, "16": 2.0, "16 + static_cache": float("nan")}, 64, TRLSetting(16)))
    | TRL per-device batch (+ generation option) | accumulation steps | s / step | |
    |---|---|---|---|
    | 8 | 8 | 3.00 |  |
    | 16 | 4 | 2.00 | chosen |
    | 16 + static_cache | 4 | failed |  |
    """
    lines = ["| TRL per-device batch (+ generation option) | accumulation steps | s / step | |", "|---|---|---|---|"]
    for label, s in timed.items():
        batch = int(label.split(" + ")[0])
        cell = "failed" if math.isnan(s) else f"{s:.2f}"
        lines.append(
            f"| {label} | {samples_per_step // batch} | {cell} | {'chosen' if label == chosen.label else ''} |"
        )
    return "\n".join(lines)
