"""GSPO's loss (Group Sequence Policy Optimization, Zheng et al. 2025): pure, torch only.

The importance ratio is the sequence's, length-normalised as in the paper:
`s_i = exp(mean_t (log p - log p_old))` over the completion's tokens, and clipping acts on
`s_i`, so a sequence is kept or cut whole. Per sequence `-min(s_i A_i, clip(s_i, 1-eps_low,
1+eps_high) A_i)`; the loss is their mean over the batch's sequences (`Norm.num_seqs`, so the
micro-batch parts add up to the batch's loss). The paper's ranges are tiny (3e-4 / 4e-4)
because a sequence ratio moves far less than a token ratio. Departure: a completion with no
tokens has no ratio and contributes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dashrl.algo.core import LossInputs, LossOutput


@dataclass(frozen=True)
class GSPOLoss:
    """Sequence-level ratio and clipping.

    >>> x = LossInputs(torch.tensor([[0.1, 0.3]]), torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
    >>> GSPOLoss(clip_eps=0.2, epsilon_high=0.3)(x)[0]  # s = e^0.2 = 1.22, inside [0.8, 1.3]
    tensor(-1.2214)
    """

    clip_eps: float = 3e-4
    epsilon_high: float = 4e-4

    def __call__(self, x: LossInputs) -> LossOutput:
        mask = x.loss_mask.to(x.logprobs.dtype)  # [N, T]
        lengths = mask.sum(dim=1)  # [N]
        log_ratio = ((x.logprobs - x.old_logprobs) * mask).sum(dim=1) / lengths.clamp(min=1.0)  # [N]
        ratio = torch.exp(log_ratio)  # [N]
        unclipped = ratio * x.advantages
        clipped = ratio.clamp(1.0 - self.clip_eps, 1.0 + self.epsilon_high) * x.advantages
        real = (lengths > 0).to(ratio.dtype)  # [N]
        per_seq = -torch.minimum(unclipped, clipped) * real  # [N]
        num_seqs = x.norm.num_seqs if x.norm is not None else x.logprobs.shape[0]
        loss = per_seq.sum() / max(num_seqs, 1.0)
        n = real.sum().clamp(min=1.0)
        metrics = {
            "loss/policy": loss.detach(),
            "clip_frac": (((clipped < unclipped).to(ratio.dtype) * real).sum() / n).detach(),
            "ratio/mean": ((ratio * real).sum() / n).detach(),
        }
        return LossOutput(loss, metrics, {"loss/policy"})
