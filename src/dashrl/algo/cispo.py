"""CISPO's loss (Clipped IS-weight Policy Optimization, MiniMax-M1, Chen et al. 2025): pure, torch only.

Per token `-sg(clip(r, 1 - eps_low, 1 + eps_high)) * A * log p`, with `r = exp(log p - log p_old)`
and `sg` a stop-gradient: the clipped ratio is a detached weight on REINFORCE, not a factor
inside PPO's `min`. So no token ever loses its gradient (PPO-clip zeroes it where the ratio
leaves the range; CISPO only caps the weight), which is what keeps the rare low-probability
tokens ("However", "Wait") learning. The gradient with respect to `log p` is
`-clip(r) * A / N` per token under token-mean (N the batch's tokens). On-policy (`r = 1`) it
equals `PGLoss`'s; it differs off-policy: `ppo_multi` / `ppo_mini`, `dist.overlap`.

Defaults, and where they come from: MiniMax-M1 sets no lower bound on the weight ("we did not
impose a lower bound ... by setting eps_low to a large value; instead, we only tuned eps_high"),
so `clip_eps` defaults to 1.0 (lower bound 0, which a ratio never reaches). TRL's
`loss_type="cispo"` caps the ratio at `epsilon_high` itself and recommends 5.0, ScaleRL's
eps_max; dashrl's `epsilon_high` is the range above 1 (as for PPO-clip and DAPO), so the same
cap is `epsilon_high` 4.0. Aggregation is the algo's (token-mean by default, as in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dashrl.algo.core import LossInputs, LossOutput, aggregate


@dataclass(frozen=True)
class CISPOLoss:
    """Clipped, detached importance weight times `-A log p`.

    >>> lp = torch.tensor([[0.5, -0.5]]); x = LossInputs(lp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
    >>> CISPOLoss(clip_eps=0.2, epsilon_high=0.28)(x)[0]  # weights 1.28 (e^0.5 capped), 0.8 (e^-0.5 floored)
    tensor(-0.1200)
    """

    clip_eps: float = 1.0
    epsilon_high: float = 4.0
    aggregation: str = "token-mean"

    def __call__(self, x: LossInputs) -> LossOutput:
        ratio = torch.exp(x.logprobs - x.old_logprobs).detach()  # [N, T]
        weight = ratio.clamp(1.0 - self.clip_eps, 1.0 + self.epsilon_high)  # [N, T], no gradient
        per_token = -weight * x.advantages[:, None] * x.logprobs  # [N, T]
        loss = aggregate(per_token, x.loss_mask, self.aggregation, x.norm)
        metrics = {
            "loss/policy": loss.detach(),
            "clip_frac": aggregate((weight != ratio).float(), x.loss_mask, "token-mean"),
            "ratio/mean": aggregate(ratio, x.loss_mask, "token-mean"),
        }
        return LossOutput(loss, metrics, {"loss/policy"})
