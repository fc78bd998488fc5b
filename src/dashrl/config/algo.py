"""The `[algo]` section, which algorithm runs and its hyper-parameters, and `[sft]`, the records
the sft algorithm trains on. Every name `[algo]` accepts (algorithms, losses, aggregations, KL
estimators) and every per-algorithm default comes from `dashrl.algo.registry`, standard library
only, so this loads without torch."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from dashrl.config.errors import ConfigError, _at_least, _check, _choice


@dataclass(frozen=True)
class AlgoConfig:
    name: str = "dash"
    """Algorithm: `dash` (the paper's method) or another registered in `dashrl.algo.registry`
    (docs/algorithms.md describes each)."""
    schedule: str = ""
    """Former name of `algo.name`, still accepted (with a one-line note); set to the name it resolves."""
    prompts_per_step: int = 8
    """M: prompts sampled per optimizer step (per cycle for ppo_multi / ppo_mini; for sft, the
    supervised records per step; with dynamic sampling, the groups trained on)."""
    group_size: int = 8
    """G: completions per prompt."""
    loss: str = ""
    """Policy loss: a registered name, or your own class as `path/to/file.py:Class` or `module:Class`,
    built with the algo fields its constructor names and called on a `LossInputs` (docs/algorithms.md,
    "Your own loss"); a file is stored as its absolute path. Empty = the algorithm's (`pg` for dash)."""
    clip_eps: float = -1.0
    """PPO clip range epsilon (DAPO's epsilon_low); negative = the algorithm's, 0.2 unless listed here."""
    epsilon_high: float = -1.0
    """Upper clip range (DAPO's clip-higher): the ratio is clipped to [1 - clip_eps, 1 + epsilon_high].
    Negative = the algorithm's, clip_eps unless listed here."""
    beta: float = -1.0
    """KL coefficient to a frozen reference model; the reference loads only when > 0.
    Negative = the algorithm's, 0 unless listed here (grpo's 0.04 was TRL's default then)."""
    kl_estimator: str = "k3"
    """KL estimator: k1 is the log ratio, k3 Schulman's unbiased, non-negative one."""
    filter_threshold: float = 0.01
    """Gradient filtering: drop samples with |advantage| <= this before any forward pass.
    Negative disables filtering (No-GF). Every algorithm but grpo applies it."""
    scale_advantages: bool = True
    """Divide group-centred rewards by the group std (GRPO); False = Dr.GRPO's mean-only
    (what `--algo.name dr_grpo` sets, with the constant aggregation)."""
    aggregation: str = ""
    """Token aggregation: how per-token terms become the loss (constant is Dr.GRPO's normaliser);
    empty = the algorithm's, token-mean unless listed here."""
    ppo_k: int = 2
    """K for ppo_multi (passes) and ppo_mini (mini-batches)."""
    overlong_window: int = -1
    """DAPO's soft overlong penalty: completions longer than max_new_tokens - window lose up to
    `overlong_penalty` of reward, linearly, reaching it at the cap. 0 = off; negative = the
    algorithm's (dapo: max_new_tokens / 4, others off)."""
    overlong_penalty: float = 1.0
    """Reward lost by a completion that reaches the token cap (with overlong_window > 0)."""
    dynamic_sampling: bool = False
    """Train each step on exactly M groups whose rewards are not all equal, drawing more prompts
    in over-sampled rounds as needed (DAPO's dynamic sampling; always on for dapo). For the
    algorithms that sample once per step (the `dash` schedule)."""
    oversample: float = 1.0
    """With dynamic sampling: the first round samples ceil(M x this) prompts at once (the
    preemptive over-sample); later rounds are sized from the informative share seen so far."""
    max_rounds: int = 4
    """With dynamic sampling: the most sampling rounds a step makes; a step that still has fewer
    than M informative groups trains on those it has, and its row says `dynamic/cap_hit`."""

    @staticmethod
    def choices() -> dict[str, tuple[str, ...]]:
        """The names each choice field takes, read from the registry: validation and the help
        (`dashrl config --show algo`, the docs site) both use this, so a new entry shows in both.

        >>> AlgoConfig.choices()["kl_estimator"]
        ('k1', 'k3')
        """
        from dashrl.algo.registry import AGGREGATIONS, KL_ESTIMATORS, LOSS_PATHS, LOSSES, NAMES

        return {
            "name": NAMES,
            "loss": (*LOSSES, *LOSS_PATHS),
            "kl_estimator": KL_ESTIMATORS,
            "aggregation": AGGREGATIONS,
        }

    @classmethod
    def help_notes(cls) -> dict[str, str]:
        """What the help adds to a field's docstring, read from the registry (`field_docs`): the
        names a choice field takes, and the algorithms whose entry sets a field's default.

        >>> AlgoConfig.help_notes()["beta"]
        'Algorithm defaults: grpo 0.04.'
        """
        from dashrl.algo.registry import ALGORITHMS

        notes = {k: f"One of: {', '.join(v)}." for k, v in cls.choices().items()}
        for key in ("clip_eps", "epsilon_high", "beta", "aggregation"):
            given = ", ".join(f"{a.name} {getattr(a, key)}" for a in ALGORITHMS.values() if getattr(a, key))
            notes[key] = f"Algorithm defaults: {given}."
        return notes

    def __post_init__(self) -> None:
        from dashrl.algo.registry import get

        choices = self.choices()
        self._resolve_name(choices["name"])
        spec = get(self.name)
        _at_least("algo.prompts_per_step", self.prompts_per_step, 1)
        _check(
            self.group_size >= 2,
            "algo.group_size",
            f"expected >= 2 (advantages compare samples in a group), got {self.group_size}",
        )
        if self.loss:  # empty = the algorithm's default, resolved below
            self._check_loss(choices["loss"])
        _check(self.clip_eps != 0, "algo.clip_eps", f"expected > 0, got {self.clip_eps}")
        _check(self.epsilon_high != 0, "algo.epsilon_high", f"expected > 0, got {self.epsilon_high}")
        _choice("algo.kl_estimator", self.kl_estimator, choices["kl_estimator"])
        if self.aggregation:
            _choice("algo.aggregation", self.aggregation, choices["aggregation"])
        _at_least("algo.ppo_k", self.ppo_k, 1)
        _at_least("algo.overlong_penalty", self.overlong_penalty, 0)
        _at_least("algo.oversample", self.oversample, 1)
        _at_least("algo.max_rounds", self.max_rounds, 1)
        self._check_fits(spec)
        self._resolve_defaults(spec)

    def _resolve_name(self, names: tuple[str, ...]) -> None:
        """`algo.name`, or the former flag `algo.schedule` as its alias (with a one-line note)."""
        if self.schedule and self.schedule != self.name:
            _check(
                self.name == "dash",
                "algo.schedule",
                f"is the former name of algo.name; give one of them (got {self.schedule!r} and {self.name!r})",
            )
            _choice("algo.schedule", self.schedule, names)
            print(f"[dashrl] note: algo.schedule is now algo.name (--algo.name {self.schedule})", file=sys.stderr)
            object.__setattr__(self, "name", self.schedule)
        _choice("algo.name", self.name, names)
        object.__setattr__(self, "schedule", self.name)

    def _check_fits(self, spec: Any) -> None:
        """The fields that depend on the algorithm's schedule: the sft loss, dynamic sampling, ppo_k."""
        from dashrl.algo.registry import ALGORITHMS

        if spec.supervised or self.loss == "sft":
            _check(spec.supervised, "algo.loss", f"the sft loss goes with --algo.name sft, not {self.name!r}")
            _check(
                self.loss in ("", "sft"),
                "algo.loss",
                f"the sft schedule trains with the sft loss (cross-entropy), got {self.loss!r}",
            )
            _check(
                self.beta <= 0, "algo.beta", f"the sft schedule has no KL term; leave beta unset or 0, got {self.beta}"
            )
        if self.dynamic_sampling:
            once = ", ".join(n for n, a in ALGORITHMS.items() if a.schedule == "dash")
            _check(
                spec.schedule == "dash",
                "algo.dynamic_sampling",
                f"needs an algorithm that samples once per step ({once}), not {self.name!r}",
            )
        if spec.schedule == "ppo_mini":
            _check(
                self.prompts_per_step % self.ppo_k == 0,
                "algo.ppo_k",
                f"ppo_mini needs prompts_per_step ({self.prompts_per_step}) divisible by ppo_k ({self.ppo_k})",
            )

    def _resolve_defaults(self, spec: Any) -> None:
        """The algorithm's defaults for the fields left unset, once, here; the config is frozen afterwards."""
        resolved = {
            "beta": self.beta if self.beta >= 0 else spec.beta,
            "loss": self.loss or spec.loss,
            "clip_eps": self.clip_eps if self.clip_eps > 0 else spec.clip_eps or 0.2,
            "aggregation": self.aggregation or spec.aggregation or "token-mean",
            "dynamic_sampling": self.dynamic_sampling or spec.dynamic_sampling,
            "scale_advantages": self.scale_advantages and spec.advantage != "dr_grpo",
        }
        resolved["epsilon_high"] = (
            self.epsilon_high if self.epsilon_high > 0 else spec.epsilon_high or resolved["clip_eps"]
        )
        for key, value in resolved.items():
            object.__setattr__(self, key, value)

    def _check_loss(self, options: tuple[str, ...]) -> None:
        """A registered name, or a user's loss path checked without importing it (a file made absolute)."""
        from dashrl.algo.registry import is_path, loss_path

        if not is_path(self.loss):
            _choice("algo.loss", self.loss, options)
            return
        try:
            object.__setattr__(self, "loss", loss_path(self.loss))
        except ValueError as e:
            raise ConfigError(f"config {e} (expected {' or '.join(options[-2:])}, a loss class)") from None

    @property
    def hparams(self) -> dict:
        """The fields a loss's constructor may name (`dashrl.algo.losses.make_loss`): all but the
        ones that pick the algorithm and its loss."""
        return {k: v for k, v in vars(self).items() if k not in ("name", "schedule", "loss")}

    @property
    def samples_per_step(self) -> int:
        """Sequences trained on per optimizer step: M x G, or M records for sft."""
        from dashrl.algo.registry import get

        return self.prompts_per_step if get(self.name).supervised else self.prompts_per_step * self.group_size


@dataclass(frozen=True)
class SFTConfig:
    data: str = "human"
    """Records of `--algo.schedule sft`: `human` = the human-written solutions that ship with
    task.name (gsm8k, math, mbppplus, wordproblems), or a JSONL(.gz) path with one problem and
    one completion per line (e.g. the traces `dashrl distill` writes)."""
    problem_field: str = "problem"
    """JSONL only: the field holding the problem (rendered as RL renders task prompts)."""
    completion_field: str = "completion"
    """JSONL only: the field holding the completion trained on."""
    max_tokens: int = 1024
    """Longest completion trained on, EOS included; longer ones are cut there (0 = no cap)."""

    def __post_init__(self) -> None:
        _check(bool(self.data.strip()), "sft.data", "expected `human` or a JSONL path, got an empty string")
        for key in ("problem_field", "completion_field"):
            _check(bool(getattr(self, key)), f"sft.{key}", "expected a field name, got an empty string")
        _at_least("sft.max_tokens", self.max_tokens, 0)
