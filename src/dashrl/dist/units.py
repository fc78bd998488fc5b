"""Work units of the distributed sampler and the bookkeeping around them; no Ray here.

A step's batch is M prompts x G samples, group-major: sample `i` belongs to group
`i // G`. The single-process `hf` sampler decodes it in chunks of `sampler.batch_size`
samples, chunk `c` seeded by `(seed, c * batch_size)`. A *unit* is the smallest run of
whole chunks that is also a run of whole groups, `lcm(batch_size, G)` samples: a
sampler actor decodes a unit chunk by chunk with exactly the seeds the single process
would use, scores it and computes its groups' advantages. So what is sampled depends
on (seed, step, weights) only, never on how many samplers there are, which sampler ran
a unit, or whether a unit was sampled again after its first sampler died.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from dashrl.algo import Norm, gradient_filter, group_advantages
from dashrl.data import Example
from dashrl.dist.store import Delivery
from dashrl.rollout import Completion, Sampler, SamplingParams
from dashrl.train.batching import Sample


@dataclass(frozen=True)
class Unit:
    """Groups `first_group .. first_group + num_groups - 1` of one step."""

    index: int
    first_group: int
    num_groups: int


def plan_units(num_prompts: int, group_size: int, batch_size: int) -> list[Unit]:
    """Cut M prompts into units of whole groups that are also whole sampler chunks.

    >>> [(u.first_group, u.num_groups) for u in plan_units(5, 4, 8)]
    [(0, 2), (2, 2), (4, 1)]
    """
    per = math.lcm(batch_size, group_size) // group_size  # groups per unit
    return [Unit(i, g, min(per, num_prompts - g)) for i, g in enumerate(range(0, num_prompts, per))]


def generate_at(sampler: Sampler, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int) -> list[Completion]:
    """Sample `prompts`, which sit at index `start` of a step's full prompt list, exactly as
    one `sampler.generate(full_list, params, seed)` call would sample them.

    `start` must be a multiple of `params.batch_size`. The `hf` backend seeds chunk
    `[s, s + batch_size)` with `seed * 1_000_003 + s`; other backends get a seed derived
    from (seed, start): still independent of the number of samplers, but not the
    single-process samples.
    """
    chunk = getattr(sampler, "_generate_chunk", None)
    if chunk is None:
        return sampler.generate(prompts, params, seed=seed * 1_000_003 + start)
    device = next(sampler.model.parameters()).device  # type: ignore[attr-defined]
    out: list[Completion] = []
    for s in range(0, len(prompts), params.batch_size):
        gen = torch.Generator(device=device).manual_seed(int(seed) * 1_000_003 + start + s)
        out.extend(chunk(prompts[s : s + params.batch_size], params, gen))
    return out


@dataclass
class UnitResult:
    """What a sampler reports to the driver about one unit (the samples travel separately)."""

    unit: int
    first_group: int
    rewards: list[float]  # [B * G] of every sample, filtered ones included
    advantages: list[float]  # [B * G]
    lengths: list[int]  # completion tokens per sample
    truncated: int
    empty: int
    kept: list[int]  # [B] samples per group that passed the gradient filter
    sampling_s: float
    scoring_s: float
    worker: int = -1


def sample_unit(
    sampler: Sampler,
    prompt_ids: Callable[[Example], list[int]],
    score: Callable[[Sequence[Example], Sequence[str]], list[float]],
    examples: Sequence[Example],
    unit: Unit,
    group_size: int,
    params: SamplingParams,
    seed: int,
    filter_threshold: float,
    scale_advantages: bool = True,
) -> tuple[UnitResult, list[list[Sample]]]:
    """Sample, score and filter one unit; returns its report and its kept samples per group.

    `examples` are the unit's own B prompts. Gradient filtering happens here, before
    anything is shipped: a group keeps only samples with |advantage| > threshold.
    """
    G = group_size
    prompts = [prompt_ids(ex) for ex in examples for _ in range(G)]
    t0 = time.perf_counter()
    completions = generate_at(sampler, prompts, params, seed, unit.first_group * G)
    t1 = time.perf_counter()
    scores = score([examples[i // G] for i in range(len(completions))], [c.text for c in completions])
    rewards = torch.tensor(scores, dtype=torch.float32).view(len(examples), G)  # [B, G]
    adv = group_advantages(rewards, scale=scale_advantages)  # [B, G]
    keep = gradient_filter(adv, filter_threshold)  # [B, G]
    t2 = time.perf_counter()
    groups: list[list[Sample]] = []
    for b in range(len(examples)):
        groups.append(
            [
                Sample(
                    prompt_ids=prompts[b * G + g],
                    completion_ids=c.token_ids,
                    logprobs=c.logprobs,
                    reward=float(rewards[b, g]),
                    advantage=float(adv[b, g]),
                    group=unit.first_group + b,
                    finish_reason=c.finish_reason,
                )
                for g, c in enumerate(completions[b * G : (b + 1) * G])
                if keep[b, g]
            ]
        )
    report = UnitResult(
        unit=unit.index,
        first_group=unit.first_group,
        rewards=rewards.view(-1).tolist(),
        advantages=adv.view(-1).tolist(),
        lengths=[len(c.token_ids) for c in completions],
        truncated=sum(c.finish_reason == "length" for c in completions),
        empty=sum(not c.token_ids for c in completions),
        kept=[len(g) for g in groups],
        sampling_s=t1 - t0,
        scoring_s=t2 - t1,
    )
    return report, groups


def batch_norm(reports: Sequence[UnitResult], max_len: int) -> Norm:
    """`Trainer.full_norm` of the whole step's batch, filtered samples included."""
    return Norm(
        num_seqs=sum(len(r.lengths) for r in reports),
        num_tokens=float(sum(sum(r.lengths) for r in reports)),
        max_len=max_len,
    )


def rollout_metrics(reports: Sequence[UnitResult]) -> dict[str, float]:
    """The single-process rollout metrics (`Trainer.rollout`) over all units of a step."""
    reports = sorted(reports, key=lambda r: r.unit)
    rewards = torch.tensor([x for r in reports for x in r.rewards])  # [M * G]
    adv = torch.tensor([x for r in reports for x in r.advantages])  # [M * G]
    n = rewards.numel()
    n_tok = sum(sum(r.lengths) for r in reports)
    return {
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()) if n > 1 else 0.0,
        "accuracy": float((rewards >= 1.0).float().mean()),
        "adv/abs_mean": float(adv.abs().mean()),
        "gen/mean_tokens": n_tok / n,
        "gen/truncated_frac": sum(r.truncated for r in reports) / n,
        "gen/empty_frac": sum(r.empty for r in reports) / n,
        "gen/sampled_tokens": n_tok,
    }


def pack_groups(kept: Sequence[tuple[int, int]], size: int) -> list[list[int]]:
    """Pack `(group, kept samples)` pairs, in order, into deliveries of whole groups holding
    at most `size` samples (a larger group travels alone); empty groups are left out.

    >>> pack_groups([(0, 3), (1, 0), (2, 2), (3, 5), (4, 1)], 4)
    [[0], [2], [3], [4]]
    >>> pack_groups([(0, 1), (1, 2), (2, 1), (3, 4)], 4)
    [[0, 1, 2], [3]]
    """
    out: list[list[int]] = []
    current: list[int] = []
    filled = 0
    for group, n in kept:
        if n == 0:
            continue
        if current and filled + n > size:
            out.append(current)
            current, filled = [], 0
        current.append(group)
        filled += n
    return out + ([current] if current else [])


def check_deliveries(step: int, deliveries: Sequence[Delivery], expected: dict[int, int]) -> None:
    """Every group with kept samples delivered exactly once and whole, nothing else."""
    seen: dict[int, int] = {}
    for d in deliveries:
        for g in d.groups:
            if g in seen:
                raise RuntimeError(f"step {step}: group {g} was delivered twice")
            seen[g] = 1
    want = {g for g, n in expected.items() if n}
    if set(seen) != want:
        raise RuntimeError(f"step {step}: groups lost {sorted(want - set(seen))}, unexpected {sorted(set(seen) - want)}")
    if sum(d.samples for d in deliveries) != sum(expected.values()):
        raise RuntimeError(f"step {step}: {sum(d.samples for d in deliveries)} samples delivered, {sum(expected.values())} kept")


@dataclass
class TrainReport:
    """What one trainer reports after its share of a step's backprop."""

    rank: int
    totals: dict[str, float] = field(default_factory=dict)  # Trainer.backprop sums over its deliveries
    opt: dict[str, Any] = field(default_factory=dict)  # Trainer.optimizer_step result
    deliveries: list[Delivery] = field(default_factory=list)
    queue_wait_s: float = 0.0
    backprop_s: float = 0.0
    allreduce_s: float = 0.0


_SUMMED = ("loss", "loss/policy", "kl", "train/tokens", "train/samples", "nonfinite")


def add_totals(acc: dict[str, float], part: dict[str, float], n: int) -> None:
    """Accumulate `Trainer.backprop` results of `n` samples: sums add, per-sample rates are
    weighted by `n` (divide by the total count at the end, see `finish_totals`)."""
    for k, v in part.items():
        acc[k] = acc.get(k, 0.0) + (v if k in _SUMMED or k.startswith("time/") else v * n)


def finish_totals(acc: dict[str, float], total: int) -> dict[str, float]:
    return {k: (v if k in _SUMMED or k.startswith("time/") else v / max(total, 1)) for k, v in acc.items()}
