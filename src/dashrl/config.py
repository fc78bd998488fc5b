"""Typed run configuration: one frozen dataclass per section, one docstring per field.

A config comes from defaults, then an optional TOML file, then `--section.field VALUE`
overrides, and is validated before anything heavy loads. The resolved config is
saved as `config.toml` in every run folder, so `dashrl train --config RUN/config.toml`
repeats a run.

>>> cfg = load_config(overrides=["--algo.schedule", "grpo"])
>>> cfg.algo.beta   # grpo defaults to TRL's KL coefficient of the paper's time
0.04
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A config key, type or value is wrong; the message says which and what was expected."""


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config {key}: {msg}")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2-135m"
    """Policy model: a Hugging Face hub id, a local folder, or `smollm2-135m` (the offline default)."""
    dtype: str = "bf16"
    """Compute dtype for sampling and backprop: `bf16` (autocast, fp32 master weights) or `fp32`."""
    attn: str = "sdpa"
    """Attention implementation passed to transformers: `sdpa` or `eager`."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""

    def __post_init__(self) -> None:
        _check(self.dtype in ("bf16", "fp32"), "model.dtype", f"expected 'bf16' or 'fp32', got {self.dtype!r}")
        _check(self.attn in ("sdpa", "eager"), "model.attn", f"expected 'sdpa' or 'eager', got {self.attn!r}")


@dataclass(frozen=True)
class TaskConfig:
    name: str = "arithmetic"
    """Training task: `arithmetic` (procedural), `gsm8k`, `math`, or a dataset name/path."""
    split: str = "train"
    """Dataset split to train on."""
    difficulty: int = 2
    """Arithmetic only: number of digits per operand (1-6)."""
    limit: int = 0
    """Use only the first N problems (0 = all)."""
    problem_field: str = ""
    """Local JSONL only: the field holding the problem text."""
    answer_field: str = ""
    """Local JSONL only: the field holding the reference answer."""

    def __post_init__(self) -> None:
        _check(1 <= self.difficulty <= 6, "task.difficulty", f"expected 1..6, got {self.difficulty}")
        _check(self.limit >= 0, "task.limit", f"expected >= 0, got {self.limit}")


@dataclass(frozen=True)
class SamplerConfig:
    backend: str = "hf"
    """Sampler backend (see dashrl.rollout.SAMPLERS)."""
    batch_size: int = 64
    """Inference batch size: sequences decoded together. Independent of train.micro_batch_size."""
    max_new_tokens: int = 64
    """Longest completion; longer ones are cut and counted as truncated."""
    temperature: float = 1.0
    """Sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    top_k: int = 0
    """Top-k sampling (0 = off)."""

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "sampler.batch_size", f"expected >= 1, got {self.batch_size}")
        _check(self.max_new_tokens >= 1, "sampler.max_new_tokens", f"expected >= 1, got {self.max_new_tokens}")
        _check(self.temperature >= 0, "sampler.temperature", f"expected >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, "sampler.top_p", f"expected in (0, 1], got {self.top_p}")
        _check(self.top_k >= 0, "sampler.top_k", f"expected >= 0, got {self.top_k}")


SCHEDULES = ("dash", "grpo", "ppo_multi", "ppo_mini")


@dataclass(frozen=True)
class AlgoConfig:
    schedule: str = "dash"
    """Update schedule: `dash` (sample M x G at once, filter, ONE step), `grpo` (generate per
    micro-batch, PPO ratio, KL), `ppo_multi` (K steps over all samples), `ppo_mini` (K mini-batches)."""
    prompts_per_step: int = 16
    """M: prompts sampled per optimizer step (per cycle for ppo_multi / ppo_mini)."""
    group_size: int = 8
    """G: completions per prompt."""
    loss: str = ""
    """Policy loss (dashrl.algo.LOSSES): empty = `pg` for dash, `ppo_clip` otherwise."""
    clip_eps: float = 0.2
    """PPO clip range epsilon."""
    beta: float = -1.0
    """KL coefficient to a frozen reference model; the reference loads only when > 0.
    Negative = the schedule's default: 0.04 for grpo (TRL's default then), 0 otherwise."""
    kl_estimator: str = "k3"
    """KL estimator: `k1` (log ratio) or `k3` (Schulman's unbiased, non-negative)."""
    filter_threshold: float = 0.01
    """Gradient filtering: drop samples with |advantage| <= this before any forward pass.
    Negative disables filtering (No-GF)."""
    scale_advantages: bool = True
    """Divide group-centred rewards by the group std (GRPO); False = Dr.GRPO's mean-only."""
    aggregation: str = "token-mean"
    """Token aggregation (dashrl.algo.AGGREGATIONS): token-mean, seq-mean, or constant (Dr.GRPO)."""
    ppo_k: int = 2
    """K for ppo_multi (passes) and ppo_mini (mini-batches)."""

    def __post_init__(self) -> None:
        _check(self.schedule in SCHEDULES, "algo.schedule", f"expected one of {list(SCHEDULES)}, got {self.schedule!r}")
        _check(self.prompts_per_step >= 1, "algo.prompts_per_step", f"expected >= 1, got {self.prompts_per_step}")
        _check(self.group_size >= 2, "algo.group_size", f"expected >= 2 (advantages compare samples in a group), got {self.group_size}")
        _check(self.loss in ("", "pg", "ppo_clip"), "algo.loss", f"expected 'pg' or 'ppo_clip', got {self.loss!r}")
        _check(self.clip_eps > 0, "algo.clip_eps", f"expected > 0, got {self.clip_eps}")
        _check(self.kl_estimator in ("k1", "k3"), "algo.kl_estimator", f"expected 'k1' or 'k3', got {self.kl_estimator!r}")
        _check(
            self.aggregation in ("token-mean", "seq-mean", "constant"),
            "algo.aggregation",
            f"expected token-mean, seq-mean or constant, got {self.aggregation!r}",
        )
        _check(self.ppo_k >= 1, "algo.ppo_k", f"expected >= 1, got {self.ppo_k}")
        if self.schedule == "ppo_mini":
            _check(
                self.prompts_per_step % self.ppo_k == 0,
                "algo.ppo_k",
                f"ppo_mini needs prompts_per_step ({self.prompts_per_step}) divisible by ppo_k ({self.ppo_k})",
            )
        # Resolve schedule-dependent defaults once, here; the config is frozen afterwards.
        if self.beta < 0:
            object.__setattr__(self, "beta", 0.04 if self.schedule == "grpo" else 0.0)
        if not self.loss:
            object.__setattr__(self, "loss", "pg" if self.schedule == "dash" else "ppo_clip")

    @property
    def samples_per_step(self) -> int:
        return self.prompts_per_step * self.group_size


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 30
    """Optimizer steps for dash and grpo; sampling cycles for ppo_multi / ppo_mini."""
    lr: float = 2e-5
    """AdamW peak learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 2
    """Linear warmup steps."""
    lr_schedule: str = "constant"
    """After warmup: `constant`, `cosine` or `linear` decay to zero."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 = off)."""
    micro_batch_size: int = 8
    """Samples per forward/backward (gradient accumulation over micro-batches)."""
    micro_batch_by: str = "groups"
    """How micro-batches are cut: `groups` (whole groups), `samples` (length-sorted), `tokens` (token budget)."""
    share_prompts: bool = True
    """Run each distinct prompt of a micro-batch through the model once and reuse its keys/values
    for the group's completions (same result, fewer tokens); best with micro_batch_by = groups."""
    token_budget: int = 4096
    """Padded tokens per micro-batch when micro_batch_by = tokens."""
    seed: int = 0
    """Seed for prompt order, sampling and everything random."""

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "train.steps", f"expected >= 1, got {self.steps}")
        _check(self.lr > 0, "train.lr", f"expected > 0, got {self.lr}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", f"expected >= 0, got {self.warmup_steps}")
        _check(self.lr_schedule in ("constant", "cosine", "linear"), "train.lr_schedule", f"expected constant, cosine or linear, got {self.lr_schedule!r}")
        _check(self.max_grad_norm >= 0, "train.max_grad_norm", f"expected >= 0, got {self.max_grad_norm}")
        _check(self.micro_batch_size >= 1, "train.micro_batch_size", f"expected >= 1, got {self.micro_batch_size}")
        _check(self.micro_batch_by in ("samples", "groups", "tokens"), "train.micro_batch_by", f"expected samples, groups or tokens, got {self.micro_batch_by!r}")
        _check(self.token_budget >= 1, "train.token_budget", f"expected >= 1, got {self.token_budget}")


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs"
    """Parent folder of run folders."""
    name: str = ""
    """Run folder name (empty = schedule + timestamp)."""
    save_every: int = 0
    """Save a checkpoint every N steps (0 = only at the end)."""
    quiet: bool = False
    """No progress bar; one plain line per step (for CI and logs)."""

    def __post_init__(self) -> None:
        _check(self.save_every >= 0, "run.save_every", f"expected >= 0, got {self.save_every}")


@dataclass(frozen=True)
class DistConfig:
    samplers: int = 0
    """H: sampler actors on Ray (0 = single process, the default). Needs the `dist` extra (Ray)."""
    trainers: int = 1
    """H': data-parallel trainer actors (gradients all-reduced with torch.distributed)."""
    address: str = ""
    """Ray cluster to join (`auto` or `HOST:PORT`); empty = start a local cluster and shut it down."""
    cpus_per_sampler: float = 1.0
    """Ray CPUs reserved by each sampler actor (also its torch thread count)."""
    cpus_per_trainer: float = 1.0
    """Ray CPUs reserved by each trainer actor (also its torch thread count)."""
    gpus_per_sampler: float = 0.0
    """GPUs per sampler actor; fractions (0.5) let samplers and trainers share one device."""
    gpus_per_trainer: float = 0.0
    """GPUs per trainer actor; fractions let actors share one device."""
    backend: str = "auto"
    """torch.distributed backend between trainers: `gloo`, `nccl`, or `auto` (nccl on GPU, else gloo)."""

    def __post_init__(self) -> None:
        _check(self.samplers >= 0, "dist.samplers", f"expected >= 0, got {self.samplers}")
        _check(self.trainers >= 1, "dist.trainers", f"expected >= 1, got {self.trainers}")
        for key in ("cpus_per_sampler", "cpus_per_trainer"):
            _check(getattr(self, key) > 0, f"dist.{key}", f"expected > 0, got {getattr(self, key)}")
        for key in ("gpus_per_sampler", "gpus_per_trainer"):
            _check(getattr(self, key) >= 0, f"dist.{key}", f"expected >= 0, got {getattr(self, key)}")
        _check(self.backend in ("auto", "gloo", "nccl"), "dist.backend", f"expected auto, gloo or nccl, got {self.backend!r}")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dist: DistConfig = field(default_factory=DistConfig)

    def __post_init__(self) -> None:
        n = self.algo.samples_per_step
        _check(
            self.train.micro_batch_size <= n,
            "train.micro_batch_size",
            f"{self.train.micro_batch_size} is larger than the batch (prompts_per_step x group_size = {n})",
        )
        if self.dist.samplers > 0:
            _check(self.algo.schedule == "dash", "dist.samplers", f"the Ray path runs the dash schedule only, got algo.schedule {self.algo.schedule!r}")
        if self.algo.schedule == "grpo":
            _check(
                self.train.micro_batch_size % self.algo.group_size == 0,
                "train.micro_batch_size",
                f"grpo generates whole groups per micro-batch: needs a multiple of group_size ({self.algo.group_size})",
            )


_SECTIONS: dict[str, type] = {f.name: f.type for f in fields(Config)}  # type: ignore[misc]


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {name: hints[name] for name in _SECTIONS}


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else f"; valid: {', '.join(sorted(options))}"


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Turn a TOML or command-line value into the field's type, or raise ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config {key}: expected {typ.__name__}, got {value!r}")


def build_config(data: dict[str, Any]) -> Config:
    """Build a validated Config from nested `{section: {field: value}}` data.

    >>> build_config({"algo": {"group_size": 4}}).algo.group_size
    4
    """
    types = _section_types()
    sections: dict[str, Any] = {}
    for sec, values in data.items():
        if sec not in types:
            raise ConfigError(f"config: unknown section {sec!r}{_suggest(sec, list(types))}")
        if not isinstance(values, dict):
            raise ConfigError(f"config {sec}: expected a table of fields, got {values!r}")
        cls = types[sec]
        hints = get_type_hints(cls)
        kwargs = {}
        for key, val in values.items():
            if key not in hints:
                raise ConfigError(f"config: unknown key '{sec}.{key}'{_suggest(key, list(hints))}")
            kwargs[key] = _coerce(f"{sec}.{key}", val, hints[key])
        sections[sec] = cls(**kwargs)
    return Config(**sections)


def parse_overrides(args: Sequence[str]) -> dict[str, dict[str, str]]:
    """`["--algo.group_size", "4", "--run.quiet=true"]` -> `{"algo": {"group_size": "4"}, ...}`."""
    out: dict[str, dict[str, str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg:
            raise ConfigError(f"expected --section.field VALUE, got {arg!r}")
        key, eq, val = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            val = args[i + 1]
            i += 1
        sec, _, name = key.partition(".")
        out.setdefault(sec, {})[name] = val
        i += 1
    return out


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """Defaults <- TOML file <- `--section.field VALUE` overrides, validated.

    >>> load_config(overrides=["--train.steps", "3"]).train.steps
    3
    """
    data: dict[str, dict[str, Any]] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: invalid TOML: {e}") from None
    for sec, vals in parse_overrides(overrides).items():
        data.setdefault(sec, {}).update(vals)
    # Values the file resolved (beta, loss) are re-resolved from the schedule when absent.
    return build_config(data)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (round-trips through `load_config`)."""
    lines = []
    for sec in fields(cfg):
        lines.append(f"[{sec.name}]")
        for f in fields(getattr(cfg, sec.name)):
            lines.append(f"{f.name} = {_toml_value(getattr(getattr(cfg, sec.name), f.name))}")
        lines.append("")
    return "\n".join(lines)


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)
