"""Policy losses, KL to a reference model, and `make_loss`, the one way a loss is built: pure
functions over tensors.

A loss is built once with its hyper-parameters (`make_loss`), then called on one
`LossInputs` record: per-token tensors `[N, T]` (N samples, T completion tokens) and
per-sample advantages `[N]`; it returns a `LossOutput`: `(loss, metrics)`, and which
metrics add up over micro-batches and ranks (`summed`; the rest are per-sample rates). `loss_mask` is 1 on real
completion tokens and 0 on padding. The KL term (`KLTerm`) is its own piece, added
once by the trainer to whichever loss runs. The shared records and token aggregation are in
`dashrl.algo.core`; which class a loss name means is in `dashrl.algo.registry.LOSSES`, and a
user's class comes by path (`--algo.loss my_loss.py:MyLoss`, docs/algorithms.md).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from dashrl.algo.core import LossFn, LossInputs, LossOutput, Norm, PGLoss, aggregate  # noqa: F401 (callers import them here)
from dashrl.algo.registry import KL_ESTIMATORS, LOSS_PATHS, LOSSES, is_path, resolve
from dashrl.runtime.user_code import load  # the loader --reward.funcs uses too


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
    raise ValueError(f"unknown KL estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")


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


def loss_class(name: str) -> type:
    """The class `algo.loss` names: a registered loss (`LOSSES`), or a user's
    `path/to/file.py:Class` / `module:Class`, loaded as `--reward.funcs` loads a function
    (`dashrl.runtime.user_code.load`).
    ValueError, one line, for an unknown name or a path that does not give a class.

    >>> loss_class("ppo_clip").__name__, loss_class("collections:OrderedDict").__name__
    ('PPOClipLoss', 'OrderedDict')
    """
    if name in LOSSES:
        return resolve(LOSSES[name].target)
    if not is_path(name):
        raise ValueError(f"unknown loss {name!r}; valid: {', '.join([*LOSSES, *LOSS_PATHS])}")
    obj = load(name, "algo.loss")  # UserCodeError (a ValueError) names the file and what failed
    if not isinstance(obj, type):
        raise ValueError(
            f"algo.loss {name!r}: {name.rpartition(':')[2]!r} is a {type(obj).__name__}, expected a class (built with "
            "algo fields, called on a LossInputs)"
        )
    return obj


def make_loss(name: str, /, **hparams: Any) -> LossFn:
    """Build loss `name` (`loss_class`) with the hyper-parameters its constructor names, taken
    by name from `hparams` (the algo section's fields: `AlgoConfig.hparams`); a constructor
    parameter without a default that `hparams` lacks is a one-line ValueError.

    >>> make_loss("pg", aggregation="seq-mean", clip_eps=0.2)
    PGLoss(aggregation='seq-mean')
    """
    cls = loss_class(name)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in inspect.signature(cls).parameters.values() if p.kind in kinds]
    missing = [p.name for p in params if p.default is p.empty and p.name not in hparams]
    if missing:
        raise ValueError(
            f"algo.loss {name!r}: {cls.__name__} asks for {', '.join(missing)}, which the algo section has no field "
            f"of (it has {', '.join(sorted(hparams))})"
        )
    return cls(**{p.name: hparams[p.name] for p in params if p.name in hparams})


def loss_problem(algo: Any) -> str:
    """What stops `algo` (the config's algo section) building its loss, as one line ("" = nothing):
    the run checks it before any model loads, so a user's bad loss file never waits for one."""
    try:
        make_loss(algo.loss, **algo.hparams)
    except ValueError as e:
        return f"config {e}"  # every message starts with algo.loss
    return ""
