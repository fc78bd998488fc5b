"""Update schedules: the order in which sampling, backprop and optimizer steps happen.

Each schedule runs one step (dash, grpo) or one sampling cycle (ppo_multi, ppo_mini)
and returns one metrics row per optimizer step it made.

- `dash` (the paper's method): sample M x G in one go (the sampler chunks it by its own
  inference batch size), drop samples with |A| <= threshold before any forward pass,
  backprop the rest in micro-batches, ONE optimizer step. Plain policy gradient.
- `grpo` (the baseline the paper compares against, as TRL 0.16 ran it): generation per
  training micro-batch (micro_batch_size / G prompts at a time), PPO ratio and KL to a
  reference model (beta 0.04), no filtering, one step per M x G samples.
- `ppo_multi`: sample M x G once, K optimizer steps each over all of them (PPO ratio
  against the sampling policy's logprobs; no copy of the old model is kept).
- `ppo_mini`: sample M x G once, K mini-batches of M/K prompts, one step each.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from dashrl.algo import Norm
from dashrl.train.trainer import Rollouts, Trainer

Row = dict[str, Any]

_SUMMED = ("time/sampling_s", "time/scoring_s", "gen/sampled_tokens")


def merge_rollouts(parts: list[Rollouts]) -> Rollouts:
    """Concatenate rollouts: times and token counts add up, rates are sample-weighted means."""
    samples = [s for p in parts for s in p.samples]
    metrics: dict[str, float] = {}
    for key in parts[0].metrics:
        if key in _SUMMED:
            metrics[key] = sum(p.metrics[key] for p in parts)
        else:
            metrics[key] = sum(p.metrics[key] * len(p.samples) for p in parts) / max(len(samples), 1)
    return Rollouts(samples, metrics)


def _row(tr: Trainer, ro: Rollouts | None, bp: dict[str, float], opt: dict[str, Any], kept: int, total: int, t0: float, sync_s: float) -> Row:
    sampling = ro.metrics if ro is not None else {"time/sampling_s": 0.0, "time/scoring_s": 0.0, "gen/sampled_tokens": 0}
    row: Row = dict(sampling)
    row.update(
        {
            "filter/kept_frac": kept / total if total else 0.0,
            "loss": bp.get("loss", 0.0),
            "grad_norm": opt.get("grad_norm", 0.0),
            "lr": opt.get("lr", tr.scheduler.get_last_lr()[0]),
            "time/backprop_s": bp.get("time/backprop_s", 0.0),
            "time/optimizer_s": opt.get("time/optimizer_s", 0.0),
            "time/sync_s": sync_s,
            "time/step_s": time.perf_counter() - t0,
            "train/samples": int(bp.get("train/samples", 0)),
            "train/tokens": int(bp.get("train/tokens", 0)),
        }
    )
    for key in ("loss/policy", "kl", "clip_frac", "ratio/mean"):
        if key in bp:
            row[key] = bp[key]
    if tr.cfg.algo.beta > 0:
        row.setdefault("kl", 0.0)
    row["tokens/sampled_per_s"] = row["gen/sampled_tokens"] / row["time/sampling_s"] if row["time/sampling_s"] else 0.0
    row["tokens/trained_per_s"] = row["train/tokens"] / row["time/backprop_s"] if row["time/backprop_s"] else 0.0
    if "skipped" in opt:
        row["skipped"] = opt["skipped"]
    return row


def _step(tr: Trainer, ro: Rollouts | None, bp: dict[str, float], kept: int, total: int, t0: float) -> Row:
    """Optimizer step on the accumulated gradients, sampler sync; one metrics row."""
    opt = tr.optimizer_step(nonfinite=bool(bp["nonfinite"]))
    sync_s = tr.sync() if "skipped" not in opt else 0.0
    return _row(tr, ro, bp, opt, kept, total, t0, sync_s)


def _update(tr: Trainer, ro: Rollouts | None, kept: list, norm: Norm, total: int, t0: float) -> Row:
    """Backprop `kept` with `norm`, then `_step`; everything filtered: no forward pass, no step."""
    if not kept:
        return _row(tr, ro, {}, {"skipped": "all_filtered"}, 0, total, t0, 0.0)
    return _step(tr, ro, tr.backprop(kept, norm), len(kept), total, t0)


def dash_step(tr: Trainer, step: int) -> list[Row]:
    t0 = time.perf_counter()
    ro = tr.rollout(tr.task.batch(step, tr.cfg.algo.prompts_per_step), tr.sample_seed(step, 0))
    return [_update(tr, ro, tr.keep(ro.samples), tr.full_norm(ro.samples), len(ro.samples), t0)]


def grpo_step(tr: Trainer, step: int) -> list[Row]:
    t0 = time.perf_counter()
    cfg = tr.cfg
    per = cfg.train.micro_batch_size // cfg.algo.group_size  # prompts per micro-batch
    examples = tr.task.batch(step, cfg.algo.prompts_per_step)
    chunks = [examples[i : i + per] for i in range(0, len(examples), per)]
    parts, totals = [], {"loss": 0.0, "time/backprop_s": 0.0, "train/tokens": 0.0, "train/samples": 0.0, "nonfinite": 0.0}
    for j, chunk in enumerate(chunks):  # generation per training micro-batch, as TRL 0.16
        ro = tr.rollout(chunk, tr.sample_seed(step, j), first_group=j * per)
        own = tr.full_norm(ro.samples)  # each micro-batch normalised by itself, scaled by 1/accumulation
        norm = Norm(own.num_seqs * len(chunks), own.num_tokens * len(chunks), own.max_len)
        bp = tr.backprop(ro.samples, norm)
        for k, v in bp.items():
            if k in ("loss/policy", "kl", "loss", "time/backprop_s", "train/tokens", "train/samples", "nonfinite"):
                totals[k] = totals.get(k, 0.0) + v
            else:  # per-sample rates: average over micro-batches
                totals[k] = totals.get(k, 0.0) + v / len(chunks)
        parts.append(ro)
    ro = merge_rollouts(parts)
    return [_step(tr, ro, totals, len(ro.samples), len(ro.samples), t0)]


def ppo_multi_cycle(tr: Trainer, cycle: int) -> list[Row]:
    t0 = time.perf_counter()
    ro = tr.rollout(tr.task.batch(cycle, tr.cfg.algo.prompts_per_step), tr.sample_seed(cycle, 0))
    kept, norm = tr.keep(ro.samples), tr.full_norm(ro.samples)
    rows = []
    for k in range(tr.cfg.algo.ppo_k):
        rows.append(_update(tr, ro if k == 0 else None, kept, norm, len(ro.samples), t0))
        t0 = time.perf_counter()
    return rows


def ppo_mini_cycle(tr: Trainer, cycle: int) -> list[Row]:
    t0 = time.perf_counter()
    M, K = tr.cfg.algo.prompts_per_step, tr.cfg.algo.ppo_k
    ro = tr.rollout(tr.task.batch(cycle, M), tr.sample_seed(cycle, 0))
    per = M // K
    rows = []
    for k in range(K):
        part = [s for s in ro.samples if k * per <= s.group < (k + 1) * per]
        rows.append(_update(tr, ro if k == 0 else None, tr.keep(part), tr.full_norm(part), len(part), t0))
        t0 = time.perf_counter()
    return rows


SCHEDULE_FNS: dict[str, Callable[[Trainer, int], list[Row]]] = {
    "dash": dash_step,
    "grpo": grpo_step,
    "ppo_multi": ppo_multi_cycle,
    "ppo_mini": ppo_mini_cycle,
}


def optimizer_steps(schedule: str, steps: int, ppo_k: int) -> int:
    """Optimizer steps a run makes: K per cycle for the PPO schedules, else one per step."""
    return steps * ppo_k if schedule in ("ppo_multi", "ppo_mini") else steps
