"""Group-relative advantages and gradient filtering: pure functions over tensors."""

from __future__ import annotations

import torch


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
