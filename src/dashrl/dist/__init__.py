"""Distributed DASH on Ray: H sampler actors, a rollout store, H' data-parallel trainers.

`dashrl train --dist.samplers H --dist.trainers H'` runs the `dash` schedule with
sampling on Ray actors and backprop on trainer actors that all-reduce gradients with
torch.distributed (gloo on CPU, NCCL on GPU). This package is the only place that
touches Ray or torch.distributed; Ray is imported inside the functions that use it.

Departures from the paper: the paper's inference workers are vLLM servers; here each
sampler actor runs a `dashrl.rollout` backend (`hf`). Work is cut into units of whole
groups aligned to the sampler's inference batches, seeded as the single process seeds
them, so a run samples the same completions for any number of samplers, and 1 sampler +
1 trainer reproduces the single-process run (`dashrl.dist.units`). Only the `dash`
schedule runs distributed.
"""

from __future__ import annotations

from typing import Any


def train_dist(cfg: Any, model: Any = None, tokenizer: Any = None, task: Any = None) -> Any:
    """Train per `cfg` on Ray; see `dashrl.dist.driver.train_dist`.

    >>> from dashrl.config import load_config
    >>> train_dist(load_config(overrides=["--dist.samplers", "2"]))  # doctest: +SKIP
    """
    try:
        import ray  # noqa: F401
    except ImportError:
        raise SystemExit("dashrl: --dist.samplers needs Ray: pip install 'dashrl[dist]' (ray==2.60.0)") from None
    from dashrl.dist.driver import train_dist as run

    return run(cfg, model, tokenizer, task)
