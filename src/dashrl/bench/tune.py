"""`dashrl tune`'s measurements: pick the inference batch size and the training micro-batch.

The paper's key observation is that inference and backprop want very different batch
sizes. `dashrl tune` (`dashrl.cli.tune`) measures, on this machine and this workload (model,
task, max new tokens, G), sampling throughput (sampled tokens/s) for each candidate inference
batch size and backprop throughput (trained tokens/s) for each candidate micro-batch size, each
micro-batch its own pass, and for the default of micro-batches joined into larger packed passes
(`train.pass_tokens`), then writes the best pair into a config file that `dashrl train --config` and
`dashrl bench --tuned` read. A candidate that runs out of memory ends its sweep.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from typing import Any


def _oom(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "out of memory" in str(e).lower()


def best(throughputs: dict[int, float]) -> int:
    """The size with the highest throughput (the smaller one on a tie).

    >>> best({8: 100.0, 16: 180.0, 32: 175.0})
    16
    """
    return max(sorted(throughputs), key=lambda k: throughputs[k])


def largest_call(cfg: Any) -> int:
    """The most rows one generate call of a training step can hold: a round of prompts times G.
    The first round is M x `algo.oversample` prompts. With dynamic sampling a later round is sized
    from the informative share seen so far (`refill_prompts`, its share floored at 1/8), and GRESO's
    first round from the last step's share, both at most 8 M. An inference batch larger than this
    never fills in training, so `dashrl tune` does not offer it.

    >>> from types import SimpleNamespace as NS
    >>> algo = NS(prompts_per_step=8, group_size=8, oversample=1.0, dynamic_sampling=False)
    >>> largest_call(NS(algo=algo)), largest_call(NS(algo=NS(**{**vars(algo), "oversample": 1.5})))
    (64, 96)
    >>> largest_call(NS(algo=NS(**{**vars(algo), "dynamic_sampling": True})))  # a refill of M at share 1/8
    512
    """
    from dashrl.algo.dapo import refill_prompts

    a = cfg.algo
    prompts = math.ceil(a.prompts_per_step * a.oversample)
    if a.dynamic_sampling:
        prompts = max(prompts, refill_prompts(need=a.prompts_per_step, informative=0, sampled=1))
    return prompts * a.group_size


def sampling_sweep(src: Any, batch_sizes: list[int]) -> dict[int, float]:
    """Sampled tokens/s of the rollout source `src`'s sampler at each inference batch size, smallest first,
    each over at least one full batch of prompts; an out-of-memory size ends the sweep."""
    G = src.cfg.algo.group_size
    sampling: dict[int, float] = {}
    for bs in sorted(batch_sizes):
        src.host.params = dataclasses.replace(src.host.params, batch_size=bs)
        n_prompts = max(1, -(-bs // G))  # at least one full inference batch
        try:
            ro = src.rollout(src.task.batch(0, n_prompts), seed=0)
        except (RuntimeError, MemoryError) as e:
            if _oom(e):
                break
            raise
        sampling[bs] = ro.metrics["gen/sampled_tokens"] / max(ro.metrics["time/sampling_s"], 1e-9)
        print(f"[tune] inference batch {bs}: {sampling[bs]:.0f} sampled tokens/s", file=sys.stderr)
    return sampling


def backprop_sweep(src: Any, tr: Any, cfg: Any, micro_batches: list[int] | None, joined: int) -> dict[int, float]:
    """Trained tokens/s of one batch of samples at each micro-batch size (default G, 2G, 4G), each
    micro-batch its own pass, and under key 0 the micro-batches of G joined into packed passes of up
    to `joined` tokens (the trainer's auto budget; 0: not packed, no such candidate). An
    out-of-memory candidate ends the sweep."""
    from dashrl.algo.advantages import full_norm

    G = cfg.algo.group_size
    samples = src.rollout(src.task.batch(1, 4), seed=1).samples
    norm = full_norm(samples, cfg.sampler.max_new_tokens)
    backprop: dict[int, float] = {}  # micro-batch size -> trained tokens/s; 0: joined passes
    trials = [(m, 1 if joined else 0) for m in sorted(micro_batches or [G, 2 * G, 4 * G])]
    trials += [(G, joined)] if joined else []  # the default: micro-batches joined into larger passes
    for mbs, pass_tokens in trials:
        key = 0 if pass_tokens > 1 else mbs
        tr.cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch_size=min(mbs, len(samples))))
        tr.pass_tokens = pass_tokens  # each micro-batch its own pass, or joined up to the budget
        try:
            t0 = time.perf_counter()
            out = tr.backprop(samples, norm)
            elapsed = time.perf_counter() - t0
        except (RuntimeError, MemoryError) as e:
            if _oom(e):
                break
            raise
        finally:
            tr.optimizer.zero_grad(set_to_none=True)
        backprop[key] = out["train/tokens"] / elapsed
        what = f"joined passes (up to {joined} tokens)" if key == 0 else f"micro-batch {mbs}"
        print(f"[tune] {what}: {backprop[key]:.0f} trained tokens/s", file=sys.stderr)
    return backprop


def tuned_config(cfg: Any, sampling: dict[int, float], backprop: dict[int, float], joined: int) -> tuple[Any, str]:
    """`cfg` with the fastest inference batch and backprop candidate, and which candidate won.
    Joined passes best: the defaults (micro-batches of G joined from the model's shape); else the
    measured micro-batch, each its own pass as measured."""
    b = best(backprop)
    train = dataclasses.replace(
        cfg.train,
        micro_batch_size=min(b or cfg.algo.group_size, cfg.algo.samples_per_step),
        pass_tokens=0 if b == 0 else (1 if joined else cfg.train.pass_tokens),
    )
    tuned = dataclasses.replace(cfg, sampler=dataclasses.replace(cfg.sampler, batch_size=best(sampling)), train=train)
    return tuned, "joined passes" if b == 0 else f"micro-batch {b}"


def tuned_flags(path: str) -> list[str]:
    """The override flags that give a run the settings `dashrl tune` wrote to `path`: the inference
    batch, the micro-batch and whether micro-batches are joined into larger passes."""
    from dashrl.config import load_config

    t = load_config(path)
    return ["--sampler.batch_size", str(t.sampler.batch_size), "--train.micro_batch_size",
            str(t.train.micro_batch_size), "--train.pass_tokens", str(t.train.pass_tokens)]  # fmt: skip
