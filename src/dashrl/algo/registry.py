"""The registry: the one place that names the algorithms and their parts (losses, advantage
estimators, aggregations, KL estimators). Standard library only, so the config validates a
name, and the help lists them, without torch; every other list of these names is derived
from the dicts and tuples here.

An algorithm is four parts, each found by name here and built lazily where torch runs:
- its advantage estimator (`advantage`, a key of `ESTIMATORS`), with DAPO's overlong reward
  shaping on top when `overlong` is set;
- its sample filter: DASH's per-sample gradient filter (`algo.filter_threshold`, every
  algorithm but grpo applies it) and DAPO's group filter with refill (`dynamic_sampling`);
- its loss (`loss`, a key of `LOSSES`, or a user's `path/to/file.py:Class`), which returns a
  `LossOutput`: the loss, its metrics and which of them add up over micro-batches and ranks;
- its schedule (`schedule`: `dashrl.train.schedules.SCHEDULE_FNS`), the order of sampling,
  backprop and optimizer steps; `dash`'s (sample M x G once, one step) is every new one's.

A part is registered as `"module:attr"`, imported on first use (`resolve`), so this module
never imports torch and the part's module never imports this one back for its name.

The defaults an entry sets (`beta`, `aggregation`, `epsilon_high`, ...) are what the config
resolves an unset field to; a flag given on the command line wins.

Adding an algorithm: an entry in `ALGORITHMS`, plus the file holding its new piece (a loss in
`dashrl/algo/<name>.py` with its line in `LOSSES`, or an estimator with its line in
`ESTIMATORS`), plus tests.

>>> sorted(ALGORITHMS)[:3]
['cispo', 'dapo', 'dash']
>>> get("gpro")
Traceback (most recent call last):
...
ValueError: unknown algorithm 'gpro'; valid: dash, grpo, ppo_multi, ppo_mini, sft, dapo, dr_grpo, gspo, rloo, cispo
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashrl.runtime.user_code import check, split


@dataclass(frozen=True)
class Loss:
    """A registered loss: where its class lives, and whether it corrects off-policy samples with an
    importance ratio (what `dist.overlap`, sampling ahead, needs)."""

    target: str  # "module:Class", a frozen dataclass whose fields are algo fields
    ratio: bool = False


LOSSES: dict[str, Loss] = {
    "pg": Loss("dashrl.algo.core:PGLoss"),
    "ppo_clip": Loss("dashrl.algo.losses:PPOClipLoss", ratio=True),
    "sft": Loss("dashrl.algo.sft:SFTLoss"),
    "gspo": Loss("dashrl.algo.gspo:GSPOLoss", ratio=True),
    "cispo": Loss("dashrl.algo.cispo:CISPOLoss", ratio=True),
}

ESTIMATORS: dict[str, str] = {  # rewards [B, G] -> advantages [B, G]
    "grpo": "dashrl.algo.advantages:grpo_advantages",
    "dr_grpo": "dashrl.algo.advantages:dr_grpo_advantages",
    "rloo": "dashrl.algo.rloo:rloo_advantages",
}

AGGREGATIONS = ("token-mean", "seq-mean", "constant")  # dashrl.algo.core.aggregate
KL_ESTIMATORS = ("k1", "k3")  # dashrl.algo.losses.kl_penalty


@dataclass(frozen=True)
class Algorithm:
    """One registered algorithm: names of its parts and the defaults it gives the config."""

    name: str
    summary: str
    schedule: str = "dash"  # a key of dashrl.train.schedules.SCHEDULE_FNS
    loss: str = "pg"  # a key of LOSSES
    advantage: str = "grpo"  # a key of ESTIMATORS
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
        Algorithm("cispo", "clipped importance-sampling weight (detached) on REINFORCE: no token loses its gradient",
                  loss="cispo", clip_eps=1.0, epsilon_high=4.0),
    )
}  # fmt: skip

NAMES = tuple(ALGORITHMS)


def get(name: str) -> Algorithm:
    """The algorithm registered as `name`; an unknown name lists every valid one."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; valid: {', '.join(NAMES)}")
    return ALGORITHMS[name]


def resolve(target: str) -> Any:
    """The object a `"module:attr"` entry names, imported now.

    >>> resolve("os.path:basename")("a/b.py")
    'b.py'
    """
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def is_path(loss: str) -> bool:
    """Whether `algo.loss` names a user's loss (`path/to/file.py:Class` or `module:Class`), not a registered one.

    >>> is_path("cispo"), is_path("my_loss.py:Clipped")
    (False, True)
    """
    return ":" in loss


LOSS_PATHS = ("path/to/file.py:Class", "module:Class")  # what algo.loss takes besides the names in LOSSES


def loss_path(spec: str) -> str:
    """`spec` (a user's loss) checked without running it (`dashrl.runtime.user_code.check`), a file
    made absolute so sampler and trainer processes find it from any folder; a ValueError says what
    is wrong. `dashrl.algo.losses.make_loss` imports and builds the class, before any model loads.

    >>> loss_path("os.path:basename")
    'os.path:basename'
    """
    check(spec, "algo.loss")
    target, name, is_file = split(spec)
    return f"{Path(target).expanduser().resolve()}:{name}" if is_file else spec.strip()
