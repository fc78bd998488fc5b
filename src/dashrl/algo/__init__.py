"""Pure math of the method: advantages, gradient filtering, losses, KL, the SFT loss. Torch only."""

from dashrl.algo.advantages import gradient_filter, group_advantages
from dashrl.algo.losses import AGGREGATIONS, LOSSES, KLTerm, LossInputs, Norm, PGLoss, PPOClipLoss, aggregate, kl_penalty, make_loss
from dashrl.algo.sft import sft_loss

__all__ = [
    "AGGREGATIONS",
    "LOSSES",
    "Norm",
    "aggregate",
    "make_loss",
    "gradient_filter",
    "group_advantages",
    "kl_penalty",
    "KLTerm",
    "LossInputs",
    "PGLoss",
    "PPOClipLoss",
    "sft_loss",
]
