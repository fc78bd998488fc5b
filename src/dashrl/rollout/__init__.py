"""Samplers: token ids in, token ids + per-token logprobs out.

Every backend implements the small `Sampler` protocol (`dashrl.rollout.base`, re-exported
here); the learner, the evaluator and the distributed sampler actors only talk to it. A backend
is chosen by name through `SAMPLERS` (`dashrl.rollout.registry`, see `make_sampler`): `hf` (our own decode loop over a
transformers model, the default) or `vllm` (an in-process vLLM engine, `rollout/vllm.py`).
The backends import `dashrl.rollout.base`, never this package, so nothing here is a cycle.
"""

from __future__ import annotations

import importlib
from typing import Any

from dashrl.rollout.base import Completion, Sampler, SamplingParams, sampling_params
from dashrl.rollout.registry import REQUIRES, SAMPLERS


def make_sampler(name: str, **kwargs: Any) -> Sampler:
    """Build a sampler backend by name.

    >>> make_sampler("hf", model=model, tokenizer=tok)  # doctest: +SKIP
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler backend {name!r}; valid: {sorted(SAMPLERS)}")
    module, cls = SAMPLERS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["REQUIRES", "SAMPLERS", "Completion", "Sampler", "SamplingParams", "make_sampler", "sampling_params"]
