"""`dashrl train`: argument parsing and error reporting around `dashrl.train.loop.train`."""

from __future__ import annotations

import argparse
import sys

from dashrl.config import ConfigError, load_config


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML run file (see configs/); fields not given keep their defaults")
    p.epilog = (
        "Any config field can be set as --section.field VALUE, e.g. --algo.schedule grpo "
        "--train.steps 10 --model.name HuggingFaceTB/SmolLM2-360M-Instruct. "
        "Sections: model, task, sampler, algo, train, run (fields documented in dashrl/config.py)."
    )


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 2
    from dashrl.models import ModelError
    from dashrl.train.loop import train

    try:
        train(cfg)
    except ModelError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
