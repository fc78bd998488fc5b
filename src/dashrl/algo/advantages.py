"""Group-relative advantages, the estimators registered in `dashrl.algo.registry.ESTIMATORS`,
and gradient filtering (DASH): the rule over advantages (`gradient_filter`), and over a step's
sample records (`keep`: which samples go to backprop; `full_norm`: the denominators they are
normalised by; anything with `advantage` and `num_tokens`, a `Sample` or a Ray `SampleRef`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from dashrl.algo.core import Norm
from dashrl.algo.registry import ESTIMATORS, resolve


def group_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Rewards `[B, G]` -> advantages `[B, G]`, each sample compared with its own group.

    `(r - mean_g) / (std_g + eps)` when `scale` (GRPO), else `r - mean_g` (Dr.GRPO).
    The std is the *unbiased* one (divisor G - 1), as in DeepSeekMath's GRPO and TRL's
    GRPOTrainer that the paper modifies, so advantages match the baselines it reports;
    the biased std would only rescale every advantage by sqrt((G-1)/G), which the
    learning rate absorbs. A group whose rewards are all equal gets exact zeros.

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    tensor([[ 1.4997, -0.4999, -0.4999, -0.4999]])
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G >= 2, got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # [B, G]
    # Equal rewards in a group give exact zeros (float sums of equal values can leave ~1e-17).
    same = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # [B, 1]
    centred = torch.where(same, torch.zeros_like(centred), centred)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True) + eps)  # [B, G]


def gradient_filter(advantages: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean mask, True where `|A| > threshold`: the samples worth a forward pass.

    A negative threshold keeps everything (No-GF).

    >>> gradient_filter(torch.tensor([0.0, 0.5, -2.0]), 0.1)
    tensor([False,  True,  True])
    """
    return advantages.abs() > threshold


def grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """GRPO's estimator: group-centred rewards divided by the group std (`group_advantages`).

    >>> grpo_advantages(torch.tensor([[3.0, 1.0]]))  # centred +-1, std sqrt(2)
    tensor([[ 0.7071, -0.7071]])
    """
    return group_advantages(rewards, scale=True)


def dr_grpo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Dr.GRPO's estimator: group-centred rewards, not divided by the std.

    >>> dr_grpo_advantages(torch.tensor([[3.0, 1.0]]))
    tensor([[ 1., -1.]])
    """
    return group_advantages(rewards, scale=False)


@dataclass(frozen=True)
class Advantages:
    """An algorithm's advantage estimator (a key of `dashrl.algo.registry.ESTIMATORS`), with DAPO's
    overlong shaping on top when `overlong_window` > 0: what turns a step's rewards `[B, G]` into
    advantages. Frozen and picklable: Ray's driver and the local source build it from the config alike.

    >>> Advantages("rloo")(torch.tensor([[1.0, 0.0]]), torch.tensor([[3, 5]]))
    tensor([[ 1., -1.]])
    >>> Advantages("grpo", overlong_window=2, max_tokens=4)(torch.tensor([[1.0, 1.0]]), torch.tensor([[2, 4]]))
    tensor([[ 0.7070, -0.7070]])
    """

    estimator: str = "grpo"
    overlong_window: int = 0
    overlong_penalty: float = 1.0
    max_tokens: int = 0
    fn: Any = field(init=False, repr=False, compare=False)  # the estimator, looked up once

    def __post_init__(self) -> None:
        object.__setattr__(self, "fn", resolve(ESTIMATORS[self.estimator]))

    def __call__(self, rewards: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.overlong_window > 0 and lengths is not None:
            from dashrl.algo.dapo import overlong_penalty

            rewards = rewards.float() + overlong_penalty(
                lengths, self.max_tokens, self.overlong_window, self.overlong_penalty
            )  # [B, G]
        return self.fn(rewards)


def advantages_of(cfg: Any) -> Advantages:
    """The estimator `cfg` (a `dashrl.config.Config`) selects; `scale` True/False (the former
    flag) is accepted by callers through `as_advantages`."""
    from dashrl.algo.registry import get

    a = cfg.algo
    name = get(a.name).advantage
    if name == "grpo" and not a.scale_advantages:
        name = "dr_grpo"
    return Advantages(name, a.overlong_window, a.overlong_penalty, cfg.sampler.max_new_tokens)


def as_advantages(x: Any) -> Advantages:
    """`Advantages` as given, or the former `scale` flag: True = GRPO's, False = Dr.GRPO's."""
    if isinstance(x, Advantages):
        return x
    return Advantages("grpo" if x else "dr_grpo")


def keep(samples: Sequence[Any], threshold: float) -> list[Any]:
    """Gradient filtering: the samples with |advantage| above `threshold` (negative keeps all).

    >>> from types import SimpleNamespace as S
    >>> [s.i for s in keep([S(i=i, advantage=a) for i, a in enumerate([0.0, 0.3, -1.0])], 0.1)]
    [1, 2]
    """
    if not samples:
        return []
    mask = gradient_filter(torch.tensor([s.advantage for s in samples]), threshold)
    return [s for s, k in zip(samples, mask.tolist()) if k]


def full_norm(samples: Sequence[Any], max_len: int) -> Norm:
    """Denominators over `samples`, filtered ones included: dropping a near-zero-advantage
    sample then removes only its (near-zero) term instead of re-weighting the rest.

    >>> from types import SimpleNamespace as S
    >>> full_norm([S(num_tokens=3), S(num_tokens=5)], 8)
    Norm(num_seqs=2, num_tokens=8.0, max_len=8)
    """
    return Norm(num_seqs=len(samples), num_tokens=float(sum(s.num_tokens for s in samples)), max_len=max_len)
