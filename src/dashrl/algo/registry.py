"""The registry of algorithms: the one place that lists their names. Standard library only,
so the config validates `algo.name` without torch.

An algorithm is four parts, each found by name here and built lazily where torch runs:
- its advantage estimator (`advantage`: `dashrl.algo.advantages.ESTIMATORS`), with DAPO's
  overlong reward shaping on top when `overlong` is set;
- its sample filter: DASH's per-sample gradient filter (`algo.filter_threshold`, every
  algorithm but grpo applies it) and DAPO's group filter with refill (`dynamic_sampling`);
- its loss (`loss`: `dashrl.algo.losses.LOSSES`), which returns a `LossOutput`: the loss, its
  metrics and which of them add up over micro-batches and ranks;
- its schedule (`schedule`: `dashrl.train.schedules.SCHEDULE_FNS`), the order of sampling,
  backprop and optimizer steps; `dash`'s (sample M x G once, one step) is every new one's.

The defaults an entry sets (`beta`, `aggregation`, `epsilon_high`, ...) are what the config
resolves an unset field to; a flag given on the command line wins.

Adding an algorithm: an entry below, plus the file holding its new piece (a loss in
`dashrl/algo/<name>.py` registered in `LOSSES`, or an estimator in `ESTIMATORS`), plus tests.

>>> sorted(ALGORITHMS)[:3]
['dapo', 'dash', 'dr_grpo']
>>> get("gpro")
Traceback (most recent call last):
...
ValueError: unknown algorithm 'gpro'; valid: dash, grpo, ppo_multi, ppo_mini, sft, dapo, dr_grpo, gspo, rloo
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Algorithm:
    """One registered algorithm: names of its parts and the defaults it gives the config."""

    name: str
    summary: str
    schedule: str = "dash"  # a key of dashrl.train.schedules.SCHEDULE_FNS: dash | grpo | ppo_multi | ppo_mini | sft
    loss: str = "pg"  # a key of dashrl.algo.losses.LOSSES
    advantage: str = "grpo"  # a key of dashrl.algo.advantages.ESTIMATORS
    beta: float = 0.0  # KL coefficient when algo.beta is left unset
    aggregation: str = ""  # token aggregation when algo.aggregation is left unset ("" = token-mean)
    clip_eps: float = 0.0  # lower clip range when algo.clip_eps is left unset (0 = 0.2)
    epsilon_high: float = 0.0  # upper clip range when algo.epsilon_high is left unset (0 = clip_eps)
    overlong: bool = False  # DAPO's soft overlong penalty on by default
    dynamic_sampling: bool = False  # DAPO's group filter with refill on by default
    filters: bool = True  # applies algo.filter_threshold (grpo, the paper's baseline, filters nothing)
    supervised: bool = False  # trains on records, not samples (no sampling, temperature 1)


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("dash", "sample M x G at once, drop |A| <= threshold before any forward pass, "
                          "ONE plain policy-gradient step"),
        Algorithm("grpo",
                  "generation per training micro-batch, PPO ratio, KL 0.04, no filter (GRPO as TRL 0.16 ran it)",
                  schedule="grpo", loss="ppo_clip", beta=0.04, filters=False),
        Algorithm("ppo_multi", "sample M x G once, K optimizer steps over all of it (PPO ratio)",
                  schedule="ppo_multi", loss="ppo_clip"),
        Algorithm("ppo_mini", "sample M x G once, K mini-batches of M/K prompts, one step each",
                  schedule="ppo_mini", loss="ppo_clip"),
        Algorithm("sft", "supervised fine-tuning: M records per step, cross-entropy on the completion",
                  schedule="sft", loss="sft", supervised=True),
        Algorithm("dapo",
                  "clip-higher, token-level loss, overlong shaping, dynamic sampling (M groups with unequal rewards)",
                  loss="ppo_clip", aggregation="token-mean", epsilon_high=0.28, overlong=True, dynamic_sampling=True),
        Algorithm("dr_grpo", "GRPO done right: advantages not divided by the group std, constant length normaliser",
                  loss="ppo_clip", advantage="dr_grpo", aggregation="constant"),
        Algorithm("gspo", "sequence-level importance ratio (length-normalised) and sequence-level clipping",
                  loss="gspo", clip_eps=3e-4, epsilon_high=4e-4),
        Algorithm("rloo", "leave-one-out baseline: each sample against the mean of the other G - 1",
                  loss="ppo_clip", advantage="rloo"),
    )
}  # fmt: skip

NAMES = tuple(ALGORITHMS)
LOSS_NAMES = ("pg", "ppo_clip", "sft", "gspo")  # the keys of dashrl.algo.losses.LOSSES (a test keeps them equal)
RATIO_LOSSES = ("ppo_clip", "gspo")  # losses that correct off-policy samples with an importance ratio
ESTIMATOR_NAMES = ("grpo", "dr_grpo", "rloo")  # the keys of dashrl.algo.advantages.ESTIMATORS
SCHEDULE_KINDS = ("dash", "grpo", "ppo_multi", "ppo_mini", "sft")  # named after the algorithm that brought each


def get(name: str) -> Algorithm:
    """The algorithm registered as `name`; an unknown name lists every valid one."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(NAMES)}")
    return ALGORITHMS[name]
