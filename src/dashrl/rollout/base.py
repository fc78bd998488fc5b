"""The sampler protocol and its value types: what every backend (`dashrl.rollout.hf`,
`dashrl.rollout.vllm`) and every caller shares, and the one place a run's `SamplingParams` are
made from its config (`sampling_params`). Standard library only; `dashrl.rollout` re-exports it.

Logprob convention: `Completion.logprobs[t]` is log softmax(logits / temperature)
of the chosen token under the sampling policy, *before* top-p / top-k truncation.
This is the same quantity the trainer recomputes, so on-policy ratios are exactly
1 up to float error (the convention of TRL and verl).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence

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


def sampling_params(cfg: Any, **changes: Any) -> SamplingParams:
    """The run's sampling settings (`cfg.sampler`), with `changes` (an evaluation's greedy
    temperature, its own length and batch) on top: every `SamplingParams` made from a config.

    >>> from dashrl.config import load_config
    >>> sampling_params(load_config(), temperature=0.0)
    SamplingParams(max_new_tokens=48, temperature=0.0, top_p=1.0, top_k=0, batch_size=64)
    """
    s = cfg.sampler
    params = SamplingParams(s.max_new_tokens, s.temperature, s.top_p, s.top_k, s.batch_size)
    return replace(params, **changes)
