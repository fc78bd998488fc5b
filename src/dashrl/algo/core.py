"""What every loss shares: the inputs record, the output record, the batch's denominators and
token aggregation; and the plain policy gradient (DASH's loss), the one every step of the default
run calls. Pure, torch only; of dashrl it imports only the registry's names, so each
loss module (`losses`, `gspo`, `sft`, `cispo`, a user's file) builds on it and none imports another.

Aggregation (how per-token terms become one number; the names are
`dashrl.algo.registry.AGGREGATIONS`):
- `token-mean` (default): sum over all tokens / number of tokens. Every token weighs the
  same, so long and short answers are not weighed differently per token (DAPO; verl's
  default). We pick it because seq-mean gives each token of a short completion more
  weight than one of a long completion, a length bias Dr.GRPO documents.
- `seq-mean`: mean over tokens of each sequence, then mean over sequences (TRL 0.16's
  GRPO, the implementation the paper modified).
- `constant`: sum over tokens / (sequences x max_len), Dr.GRPO's constant normaliser.

`norm` lets a caller supply the denominators of the *whole* batch when a batch is
split into micro-batches: the micro-batch losses then add up to the full-batch loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from dashrl.algo.registry import AGGREGATIONS

Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Norm:
    """Denominators of the full batch: sequences, real tokens, and the constant max_len."""

    num_seqs: float
    num_tokens: float
    max_len: int


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", norm: Norm | None = None
) -> torch.Tensor:
    """Reduce per-token `values [N, T]` under `mask [N, T]` to a scalar.

    >>> v = torch.tensor([[1.0, 3.0], [5.0, 0.0]]); m = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> aggregate(v, m, "token-mean"), aggregate(v, m, "seq-mean")
    (tensor(3.), tensor(3.5000))
    """
    mask = mask.to(values.dtype)
    if norm is None:
        norm = Norm(num_seqs=values.shape[0], num_tokens=float(mask.sum()), max_len=values.shape[1])
    if mode == "token-mean":
        return (values * mask).sum() / max(norm.num_tokens, 1.0)
    if mode == "seq-mean":
        per_seq = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # [N]
        return per_seq.sum() / max(norm.num_seqs, 1.0)
    if mode == "constant":
        return (values * mask).sum() / max(norm.num_seqs * norm.max_len, 1.0)
    raise ValueError(f"unknown aggregation {mode!r}; valid: {', '.join(AGGREGATIONS)}")


class LossOutput(tuple):
    """A loss's `(loss, metrics)` (it unpacks as that pair) and `summed`, the metrics that add
    up over micro-batches and ranks: terms divided by the whole batch's denominators (`Norm`).
    Every other metric is a per-sample rate, averaged weighting each part by its samples
    (`dashrl.totals.Totals`).

    >>> out = LossOutput(torch.tensor(1.0), {"loss/policy": torch.tensor(1.0)}, {"loss/policy"})
    >>> loss, metrics = out; out.summed
    frozenset({'loss/policy'})
    """

    summed: frozenset

    def __new__(cls, loss: torch.Tensor, metrics: Metrics, summed: Any = ()) -> "LossOutput":
        out = super().__new__(cls, (loss, metrics))
        out.summed = frozenset(summed)
        return out

    @property
    def loss(self) -> torch.Tensor:
        return self[0]

    @property
    def metrics(self) -> Metrics:
        return self[1]

    @classmethod
    def of(cls, out: Any) -> "LossOutput":
        """A loss's result as a `LossOutput` (a plain pair declares nothing summed)."""
        return out if isinstance(out, LossOutput) else cls(out[0], out[1])


@dataclass
class LossInputs:
    """What every policy loss reads: one micro-batch's per-token tensors and its batch's denominators."""

    logprobs: torch.Tensor  # [N, T] current policy
    old_logprobs: torch.Tensor  # [N, T] sampling policy
    advantages: torch.Tensor  # [N]
    loss_mask: torch.Tensor  # [N, T] 1 on completion tokens
    norm: Norm | None = None  # denominators of the whole optimizer batch; None = this micro-batch's


LossFn = Callable[[LossInputs], LossOutput]


@dataclass(frozen=True)
class PGLoss:
    """Plain policy gradient (DASH): `-A * log p` per token, no ratio, no clipping.

    One gradient step per sample batch, so the samples are on-policy and the PPO ratio
    would be exactly 1: its gradient equals this one.

    >>> x = LossInputs(torch.tensor([[-1.0, -2.0]]), torch.zeros(1, 2), torch.tensor([2.0]), torch.ones(1, 2))
    >>> PGLoss()(x)[0]
    tensor(3.)
    """

    aggregation: str = "token-mean"

    def __call__(self, x: LossInputs) -> LossOutput:
        per_token = -x.advantages[:, None] * x.logprobs  # [N, T]
        loss = aggregate(per_token, x.loss_mask, self.aggregation, x.norm)
        return LossOutput(loss, {"loss/policy": loss.detach()}, {"loss/policy"})
