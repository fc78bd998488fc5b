"""Pure math of the method: advantages, gradient filtering, losses, KL, the SFT loss. Torch only."""

from dashrl.algo.advantages import gradient_filter, group_advantages
from dashrl.algo.losses import AGGREGATIONS, LOSSES, Norm, aggregate, get_loss, kl_penalty, pg_loss, ppo_clip_loss
from dashrl.algo.sft import sft_loss

__all__ = [
    "AGGREGATIONS",
    "LOSSES",
    "Norm",
    "aggregate",
    "get_loss",
    "gradient_filter",
    "group_advantages",
    "kl_penalty",
    "pg_loss",
    "ppo_clip_loss",
    "sft_loss",
]
