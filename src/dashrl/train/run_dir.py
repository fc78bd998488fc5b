"""The run folder: where a run lives, whether it can be resumed, and the one-line hints that say how.

`dashrl.train.preflight` (checks before anything loads) and `dashrl.train.loop` (the loop) both
use these; neither imports the other. Standard library at module level; the checkpoint reader and
the config loader load when a folder is looked at.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

from dashrl.config import Config, ConfigError, load_config, to_dict
from dashrl.train.checkpoint import latest_checkpoint, read_info
from dashrl.train.metrics import read_metrics

# Fields a resume may change; any other change would make it a different run.
RESUMABLE_CHANGES = ("train.steps",)


class RunError(RuntimeError):
    """The run cannot start or go on; the one-line message says why and what to do."""


def resume_command(run_dir: Path) -> str:
    return f"dashrl train --resume {shlex.quote(str(run_dir))}"


def start_over(run_dir: Path) -> str:
    """How to start a run afresh in `run_dir` without losing what is there: move it aside."""
    folder = shlex.quote(str(run_dir))
    return (
        f"to start over, move it aside (mv {folder} {shlex.quote(str(run_dir) + '.old')}) or remove it, "
        "or choose another --run.name"
    )


def resume_hint(run_dir: Path) -> str:
    """What a resume of `run_dir` would do, read from the folder itself (the checkpoint that a
    resume loads), so the hint holds however the run stopped, and offers no resume where no
    resumable checkpoint exists."""
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if ckpt is None:
        return f"no resumable checkpoint exists, so there is nothing to resume; {start_over(run_dir)}"
    step = read_info(ckpt)["step"]
    return (
        f"the last checkpoint holds step {step}; resume with: {resume_command(run_dir)} "
        f"(it continues with step {step + 1})"
    )


def _config_changes(saved: Config, cfg: Config) -> list[str]:
    """Fields that differ between a run's saved config and `cfg`, besides those a resume may change."""
    a, b = to_dict(saved), to_dict(cfg)
    changes = []
    for sec in a:
        if sec == "run":
            continue
        for key, old in a[sec].items():
            new = b[sec][key]
            if old != new and f"{sec}.{key}" not in RESUMABLE_CHANGES:
                changes.append(f"{sec}.{key} = {old!r} in the run, {new!r} now")
    return changes


def run_dir_of(cfg: Config) -> Path:
    """The run folder `cfg` names; without `run.name`, a new `ALGORITHM-TIMESTAMP` folder."""
    if cfg.run.name:
        return Path(cfg.run.out_dir) / cfg.run.name
    base = Path(cfg.run.out_dir) / f"{cfg.algo.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir, n = base, 1
    while run_dir.exists():  # two runs started in the same second
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def find_resume_point(cfg: Config, run_dir: Path, resume: bool | None) -> Path | None:
    """The checkpoint to continue from, or None for a fresh run; raises RunError on a clash.

    `resume` None: continue if `run_dir` holds a checkpoint of the same config; True: it
    must; False: the folder must not hold one.
    """
    if resume and not run_dir.is_dir():
        raise RunError(f"run folder {run_dir} does not exist")
    ckpt = latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if ckpt is None:
        if run_dir.is_dir() and latest_checkpoint(run_dir, resumable=False):  # run.keep_state = "none"
            raise RunError(
                f"run folder {run_dir} holds checkpoints without trainer state (run.keep_state = none); it cannot be "
                "resumed; choose another --run.name"
            )
        if resume:
            raise RunError(
                f"run folder {run_dir} has no checkpoint to resume from (none was saved yet); {start_over(run_dir)}"
            )
        logged = len(read_metrics(run_dir / "metrics.jsonl")) if (run_dir / "metrics.jsonl").is_file() else 0
        if logged:  # a run that died before its first checkpoint: its logged steps are not thrown away
            raise RunError(
                f"run folder {run_dir} holds {logged} logged step(s) but no checkpoint (the run stopped before its "
                f"first save), so it cannot be resumed and a new run would overwrite them; {start_over(run_dir)}"
            )
        return None
    if resume is False:
        raise RunError(
            f"run folder {run_dir} already holds a run; choose another --run.name or resume it with: "
            f"{resume_command(run_dir)}"
        )
    try:
        saved = load_config(run_dir / "config.toml")
    except ConfigError as e:
        raise RunError(f"cannot resume {run_dir}: {e}") from None
    changes = _config_changes(saved, cfg)
    if changes:
        raise RunError(
            f"run folder {run_dir} holds a run with another config ({'; '.join(changes)}); "
            f"choose another --run.name, or edit {run_dir / 'config.toml'} if you mean to change it"
        )
    return ckpt
