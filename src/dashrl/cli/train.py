"""`dashrl train`: argument parsing and error reporting around `dashrl.train.loop.train`.

    dashrl train --config quickstart --run.name qs                 # a new run (or continue qs)
    dashrl train --resume runs/qs                                  # continue from its checkpoint
    dashrl train --resume runs/qs --train.steps 60                 # ... and train longer

Bad input (config, model, dataset, run folder, a full disk) ends with one line on stderr
and a non-zero exit status, never a traceback: 2 for a bad config, 1 for the rest,
128 + the signal number after Ctrl-C (130) or SIGTERM (143).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dashrl.config import ConfigError, build_config, check_keys, parse_overrides

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def add_arguments(p: argparse.ArgumentParser) -> None:
    from dashrl.config import sections_summary, shipped_configs

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument(
        "--config",
        metavar="FILE_OR_NAME",
        help=f"TOML run file, or the name of a shipped one ({', '.join(shipped_configs())}); "
        "fields not given keep their defaults",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest checkpoint (its config.toml; only "
        "--train.steps and --run.* may change)",
    )
    p.epilog = (
        "Any config field can be set as --section.field VALUE, e.g. --algo.name grpo\n"
        "--train.steps 10 --model.name HuggingFaceTB/SmolLM2-360M-Instruct.\n"
        "Sections and fields:\n\n"
        f"{sections_summary()}\n\n"
        "Types, defaults and docs: `dashrl config --show SECTION`, or `dashrl config`\n"
        "for all of them.\n"
        "A run whose --run.name folder holds a checkpoint continues from it."
    )


def fail(msg: str, status: int) -> int:
    """Print `dashrl: msg` on stderr (the one-line error of every command); return `status`."""
    print(f"dashrl: {msg}", file=sys.stderr)
    return status


def resume_config(run_dir: Path, overrides: list[str]) -> Any:
    """The config of the run in `run_dir`, with `overrides`, pointing at that folder."""
    path = run_dir / "config.toml"
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (it has no config.toml)")
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text())
        check_keys(data)
    except (tomllib.TOMLDecodeError, ConfigError, OSError) as e:
        raise ConfigError(f"{path}: {e}") from None
    from dashrl.train.loop import RESUMABLE_CHANGES  # light: the loop imports torch only when it runs

    parsed = parse_overrides(overrides)
    for sec, vals in parsed.items():
        if sec == "run" and ({"out_dir", "name"} & set(vals)):
            raise ConfigError(
                "--resume continues the run in its own folder: --run.out_dir and --run.name cannot change"
            )
        fixed = [f"--{sec}.{key}" for key in vals if sec != "run" and f"{sec}.{key}" not in RESUMABLE_CHANGES]
        if fixed:
            given = " ".join(f"{flag} {parsed[flag[2:].split('.')[0]][flag.split('.')[1]]}" for flag in fixed)
            raise ConfigError(
                f"--resume continues {run_dir} as it was configured: only --train.steps and --run.* may change, "
                f"not {', '.join(fixed)}; to train with that change, start a new run from its config: "
                f"dashrl train --config {path} {given} --run.name NEW_NAME"
            )
        data.setdefault(sec, {}).update(vals)
    resolved = run_dir.resolve()
    data.setdefault("run", {}).update(out_dir=str(resolved.parent), name=resolved.name)
    return build_config(data)


def run(args: argparse.Namespace) -> int:
    from dashrl.config import load_config

    try:
        if args.resume:
            if args.config:
                raise ConfigError("--resume takes the config from the run folder; drop --config")
            cfg = resume_config(Path(args.resume), args.overrides)
        else:
            cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        return fail(str(e), 2)
    from dashrl.data.datasets import DatasetError
    from dashrl.models import ModelError
    from dashrl.train.loop import Interrupted, RunError, train

    try:
        train(cfg, resume=True if args.resume else None)
    except (ModelError, DatasetError, RunError) as e:
        return fail(str(e), 1)
    except Interrupted as e:
        print(f"[dashrl] {e}", file=sys.stderr)
        return 128 + int(e.signum)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    return 0
