"""RLOO's advantage (REINFORCE leave-one-out, Ahmadian et al. 2024): pure, torch only.

Each sample's baseline is the mean reward of the OTHER G - 1 samples of its group:
`A_i = r_i - (sum_j r_j - r_i) / (G - 1)`, which is `G / (G - 1)` times the group-centred
reward, and never divided by a std.
"""

from __future__ import annotations

import torch


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards `[B, G]` -> leave-one-out advantages `[B, G]`; a group of equal rewards gets exact zeros.

    >>> rloo_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    tensor([[ 1.0000, -0.3333, -0.3333, -0.3333]])
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [B, G] with G >= 2, got shape {tuple(rewards.shape)}")
    rewards = rewards.float()
    G = rewards.shape[1]
    others = (rewards.sum(dim=1, keepdim=True) - rewards) / (G - 1)  # [B, G]
    same = (rewards == rewards[:, :1]).all(dim=1, keepdim=True)  # [B, 1]
    return torch.where(same, torch.zeros_like(rewards), rewards - others)  # [B, G]
