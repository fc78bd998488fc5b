"""Supervised fine-tuning loss (the SFT-H / SFT-M baselines): a pure function, torch only.

Cross-entropy on completion tokens only. The caller passes the per-token logprobs of
the completion tokens `[N, T]` (as the trainer's forward pass computes them for RL, at
temperature 1) and `loss_mask [N, T]`, 1 on real completion tokens; prompt tokens never
enter (they are not among the T columns) and padding is masked.

Aggregation is `token-mean` by default, over the *whole* batch: with `norm` set to the
full batch's denominators (`dashrl.algo.Norm`), the micro-batch losses add up to the
full-batch loss, so the split into micro-batches never changes the gradient, exactly as
for the RL losses. `seq-mean` and `constant` are accepted for symmetry with RL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dashrl.algo.core import LossInputs, LossOutput, Metrics, Norm, aggregate


def sft_loss(
    logprobs: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    aggregation: str = "token-mean",
    norm: Norm | None = None,
) -> tuple[torch.Tensor, Metrics]:
    """Negative log-likelihood of the completion tokens, aggregated over the batch.

    Metrics: `loss/nll` (the same value, detached) and `tokens` (real completion tokens here).

    >>> lp = torch.tensor([[-1.0, -3.0], [-2.0, -9.0]]); mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> sft_loss(lp, mask)[0]  # (1 + 3 + 2) / 3 tokens; the padded -9 is ignored
    tensor(2.)
    """
    if logprobs.shape != loss_mask.shape:
        raise ValueError(f"logprobs {tuple(logprobs.shape)} and loss_mask {tuple(loss_mask.shape)} differ in shape")
    loss = aggregate(-logprobs, loss_mask, aggregation, norm)
    return loss, {"loss/nll": loss.detach(), "tokens": loss_mask.sum().detach()}


@dataclass(frozen=True)
class SFTLoss:
    """Supervised fine-tuning (`--algo.name sft`) as a registered loss: `sft_loss` on a
    `LossInputs`; advantages and old logprobs are not read.

    >>> x = LossInputs(torch.tensor([[-1.0, -3.0]]), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2))
    >>> SFTLoss()(x)[0]
    tensor(2.)
    """

    aggregation: str = "token-mean"

    def __call__(self, x: LossInputs) -> LossOutput:
        loss, _ = sft_loss(x.logprobs, x.loss_mask, aggregation=self.aggregation, norm=x.norm)
        return LossOutput(loss, {})  # the trainer logs it as `loss`
