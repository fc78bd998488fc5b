"""Distributed DASH on Ray: H sampler actors, a rollout store, H' data-parallel trainers.

`dashrl train --dist.samplers H --dist.trainers H'` runs any schedule through the same
loop as one process (`dashrl.train.loop`), with sampling on Ray actors and backprop on
trainer actors that all-reduce gradients with torch.distributed (gloo on CPU, NCCL on
GPU); `dashrl.distributed.backend` is the rollout source and the learner. This package is the
only place that touches Ray or torch.distributed; Ray is imported inside the functions
that use it. It imports nothing from `dashrl.train`: the loop passes in the learner class
that the trainer actors wrap.

Departures from the paper: the paper's inference workers are vLLM servers; here each
sampler actor runs a `dashrl.rollout` backend (`hf`). Work is cut into units of whole
groups aligned to the sampler's inference batches, seeded as the single process seeds
them, so a run samples the same completions for any number of samplers, and 1 sampler +
1 trainer reproduces the single-process run (`dashrl.distributed.units`).
"""

from __future__ import annotations

from typing import Any


def ray_backend(cfg: Any, model: Any, tokenizer: Any, task: Any, optimizer_steps: int, make_learner: Any) -> Any:
    """The `(source, learner)` context of a Ray run; see `dashrl.distributed.backend.ray_backend`."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("dashrl: --dist.samplers needs Ray: pip install 'dashrl[dist]' (ray==2.60.0)") from None
    from dashrl.distributed.backend import ray_backend as open_ray

    return open_ray(cfg, model, tokenizer, task, optimizer_steps, make_learner)
