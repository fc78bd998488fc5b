"""Policy losses, KL to a reference model and token aggregation: pure functions.

Every loss takes per-token tensors `[N, T]` (N samples, T completion tokens) and
per-sample advantages `[N]`, and returns `(loss, metrics)`. `loss_mask` is 1 on real
completion tokens and 0 on padding.

Aggregation (how per-token terms become one number):
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
from typing import Callable

import torch

Metrics = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Norm:
    """Denominators of the full batch: sequences, real tokens, and the constant max_len."""

    num_seqs: float
    num_tokens: float
    max_len: int


def aggregate(values: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", norm: Norm | None = None) -> torch.Tensor:
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
    raise ValueError(f"unknown aggregation {mode!r}; valid: {sorted(AGGREGATIONS)}")


AGGREGATIONS = ("token-mean", "seq-mean", "constant")


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(policy || reference) from sampled tokens.

    k1 = log p - log q (unbiased, can be negative); k3 = q/p - log(q/p) - 1
    (unbiased and never negative; the estimator GRPO uses).

    >>> kl_penalty(torch.tensor([0.0]), torch.tensor([-1.0]), "k3")
    tensor([0.3679])
    """
    log_ratio = ref_logprobs - logprobs  # log q/p
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.exp(log_ratio) - log_ratio - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}; valid: ['k1', 'k3']")


def _finish(
    per_token: torch.Tensor,
    logprobs: torch.Tensor,
    loss_mask: torch.Tensor,
    aggregation: str,
    norm: Norm | None,
    ref_logprobs: torch.Tensor | None,
    beta: float,
    kl_estimator: str,
    metrics: Metrics,
) -> tuple[torch.Tensor, Metrics]:
    """Add the KL term (when beta > 0), aggregate, and fill the shared metrics."""
    metrics["loss/policy"] = aggregate(per_token, loss_mask, aggregation, norm).detach()
    if beta > 0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs")
        kl = kl_penalty(logprobs, ref_logprobs, kl_estimator)  # [N, T]
        metrics["kl"] = aggregate(kl, loss_mask, aggregation, norm).detach()
        per_token = per_token + beta * kl
    return aggregate(per_token, loss_mask, aggregation, norm), metrics


def pg_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    aggregation: str = "token-mean",
    norm: Norm | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, Metrics]:
    """Plain policy gradient (DASH): `-A * log p` per token, no ratio, no clipping.

    One gradient step per sample batch, so the samples are on-policy and the PPO ratio
    would be exactly 1: its gradient equals this one. `old_logprobs` and `clip_eps`
    are accepted for a uniform signature and ignored.

    >>> pg_loss(torch.tensor([[-1.0, -2.0]]), None, torch.tensor([2.0]), torch.ones(1, 2))[0]
    tensor(3.)
    """
    per_token = -advantages[:, None] * logprobs  # [N, T]
    return _finish(per_token, logprobs, loss_mask, aggregation, norm, ref_logprobs, beta, kl_estimator, {})


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor | None,
    advantages: torch.Tensor,
    loss_mask: torch.Tensor,
    *,
    aggregation: str = "token-mean",
    norm: Norm | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, Metrics]:
    """Clipped PPO / GRPO surrogate against the sampling policy's logprobs.

    `-min(r A, clip(r, 1-eps, 1+eps) A)` per token with `r = exp(log p - log p_old)`.

    >>> lp = torch.tensor([[0.5]]); old = torch.tensor([[0.0]])  # ratio e^0.5 = 1.65
    >>> ppo_clip_loss(lp, old, torch.tensor([1.0]), torch.ones(1, 1))[0]  # clipped at 1.2
    tensor(-1.2000)
    """
    if old_logprobs is None:
        raise ValueError("ppo_clip_loss needs old_logprobs (the sampling policy's)")
    ratio = torch.exp(logprobs - old_logprobs)  # [N, T]
    adv = advantages[:, None]  # [N, 1]
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)  # [N, T]
    metrics: Metrics = {
        "clip_frac": aggregate((clipped < unclipped).float(), loss_mask, "token-mean").detach(),
        "ratio/mean": aggregate(ratio.detach(), loss_mask, "token-mean"),
    }
    return _finish(per_token, logprobs, loss_mask, aggregation, norm, ref_logprobs, beta, kl_estimator, metrics)


LossFn = Callable[..., tuple[torch.Tensor, Metrics]]
LOSSES: dict[str, LossFn] = {"pg": pg_loss, "ppo_clip": ppo_clip_loss}


def get_loss(name: str) -> LossFn:
    """Look a loss up by name; an unknown name lists the valid ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(LOSSES)}")
    return LOSSES[name]
