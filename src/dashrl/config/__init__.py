"""Typed run configuration: one frozen dataclass per section, one docstring per field.

A config comes from defaults, then an optional TOML file, then `--section.field VALUE`
overrides, and is validated before anything heavy loads. The resolved config is
saved as `config.toml` in every run folder, so `dashrl train --config RUN/config.toml`
repeats a run.

>>> cfg = load_config(overrides=["--algo.name", "grpo"])
>>> cfg.algo.beta   # grpo defaults to TRL's KL coefficient of the paper's time
0.04
"""

from dashrl.config.docs import describe_fields, field_docs, sections_summary
from dashrl.config.errors import ConfigError, _at_least, _check, _choice, _suggest
from dashrl.config.loading import (
    ALIASES,
    CONFIGS,
    build_config,
    check_keys,
    find_config,
    load_config,
    parse_overrides,
    shipped_configs,
    to_dict,
    to_toml,
)
from dashrl.config.select import SelectConfig
from dashrl.config.schema import (
    LOGGERS,
    OPTIMIZERS,
    AlgoConfig,
    Config,
    DistConfig,
    EvalConfig,
    LoraConfig,
    ModelConfig,
    RewardConfig,
    RunConfig,
    SamplerConfig,
    SFTConfig,
    TaskConfig,
    TrainConfig,
)

__all__ = [
    "ALIASES",
    "CONFIGS",
    "LOGGERS",
    "OPTIMIZERS",
    "AlgoConfig",
    "Config",
    "ConfigError",
    "DistConfig",
    "EvalConfig",
    "LoraConfig",
    "ModelConfig",
    "RewardConfig",
    "RunConfig",
    "SFTConfig",
    "SamplerConfig",
    "SelectConfig",
    "TaskConfig",
    "TrainConfig",
    "_at_least",
    "_check",
    "_choice",
    "_suggest",
    "build_config",
    "check_keys",
    "describe_fields",
    "field_docs",
    "find_config",
    "load_config",
    "parse_overrides",
    "sections_summary",
    "shipped_configs",
    "to_dict",
    "to_toml",
]
