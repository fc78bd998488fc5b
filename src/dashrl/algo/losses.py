"""Policy losses, KL to a reference model and token aggregation: pure functions.

A loss is built once with its hyper-parameters (`make_loss`), then called on one
`LossInputs` record: per-token tensors `[N, T]` (N samples, T completion tokens) and
per-sample advantages `[N]`; it returns a `LossOutput`: `(loss, metrics)`, and which
metrics add up over micro-batches and ranks (`summed`; the rest are per-sample rates). `loss_mask` is 1 on real
completion tokens and 0 on padding. The KL term (`KLTerm`) is its own piece, added
once by the trainer to whichever loss runs.

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

from dataclasses import dataclass, fields
from typing import Any, Callable

import torch

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
    raise ValueError(f"unknown aggregation {mode!r}; valid: {sorted(AGGREGATIONS)}")


def __getattr__(name: str) -> Any:
    if name == "LOSSES":  # built on first use: gspo.py imports this module
        return _losses()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


@dataclass(frozen=True)
class PPOClipLoss:
    """Clipped PPO / GRPO surrogate against the sampling policy's logprobs.

    `-min(r A, clip(r, 1-eps_low, 1+eps_high) A)` per token with `r = exp(log p - log p_old)`;
    `epsilon_high` (DAPO's clip-higher) defaults to `clip_eps`, the symmetric range.

    >>> x = LossInputs(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([1.0]), torch.ones(1, 1))
    >>> PPOClipLoss(clip_eps=0.2)(x)[0]  # ratio e^0.5 = 1.65, clipped at 1.2
    tensor(-1.2000)
    >>> PPOClipLoss(clip_eps=0.2, epsilon_high=0.28)(x)[0]  # clip-higher: at 1.28
    tensor(-1.2800)
    """

    clip_eps: float = 0.2
    aggregation: str = "token-mean"
    epsilon_high: float = -1.0  # negative = clip_eps

    def __call__(self, x: LossInputs) -> LossOutput:
        high = self.epsilon_high if self.epsilon_high > 0 else self.clip_eps
        ratio = torch.exp(x.logprobs - x.old_logprobs)  # [N, T]
        adv = x.advantages[:, None]  # [N, 1]
        unclipped = ratio * adv
        clipped = ratio.clamp(1.0 - self.clip_eps, 1.0 + high) * adv
        per_token = -torch.minimum(unclipped, clipped)  # [N, T]
        loss = aggregate(per_token, x.loss_mask, self.aggregation, x.norm)
        metrics = {
            "loss/policy": loss.detach(),
            "clip_frac": aggregate((clipped < unclipped).float(), x.loss_mask, "token-mean").detach(),
            "ratio/mean": aggregate(ratio.detach(), x.loss_mask, "token-mean"),
        }
        return LossOutput(loss, metrics, {"loss/policy"})


@dataclass(frozen=True)
class KLTerm:
    """`beta * KL(policy || reference)`, aggregated like the policy loss; added once, by the
    caller, to whichever policy loss runs.

    >>> x = LossInputs(torch.tensor([[0.0]]), torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))
    >>> KLTerm(beta=0.5)(x, torch.tensor([[-1.0]]))[0]  # 0.5 * (e^-1 + 1 - 1)
    tensor(0.1839)
    """

    beta: float
    kl_estimator: str = "k3"
    aggregation: str = "token-mean"

    def __call__(self, x: LossInputs, ref_logprobs: torch.Tensor) -> LossOutput:
        kl = aggregate(kl_penalty(x.logprobs, ref_logprobs, self.kl_estimator), x.loss_mask, self.aggregation, x.norm)
        return LossOutput(self.beta * kl, {"kl": kl.detach()}, {"kl"})


@dataclass(frozen=True)
class SFTLoss:
    """Supervised fine-tuning (`--algo.name sft`): the negative log-likelihood of the
    completion tokens (`dashrl.algo.sft.sft_loss`); advantages and old logprobs are not read.

    >>> x = LossInputs(torch.tensor([[-1.0, -3.0]]), torch.zeros(1, 2), torch.zeros(1), torch.ones(1, 2))
    >>> SFTLoss()(x)[0]
    tensor(2.)
    """

    aggregation: str = "token-mean"

    def __call__(self, x: LossInputs) -> LossOutput:
        from dashrl.algo.sft import sft_loss  # sft.py builds on this module's `aggregate`

        loss, _ = sft_loss(x.logprobs, x.loss_mask, aggregation=self.aggregation, norm=x.norm)
        return LossOutput(loss, {})  # the trainer logs it as `loss`


def _losses() -> dict[str, type]:
    from dashrl.algo.gspo import GSPOLoss  # gspo.py builds on this module

    return {"pg": PGLoss, "ppo_clip": PPOClipLoss, "sft": SFTLoss, "gspo": GSPOLoss}


LossFn = Callable[[LossInputs], LossOutput]


def make_loss(name: str, **hparams: Any) -> LossFn:
    """Build loss `name` with its hyper-parameters, taken by field name from `hparams`
    (e.g. the algo config's fields); an unknown name lists the valid ones.

    >>> make_loss("pg", aggregation="seq-mean", clip_eps=0.2)
    PGLoss(aggregation='seq-mean')
    """
    losses = _losses()
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; valid: {sorted(losses)}")
    cls = losses[name]
    return cls(**{f.name: hparams[f.name] for f in fields(cls) if f.name in hparams})
