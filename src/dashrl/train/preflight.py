"""Checks that run before anything heavy loads: a bad run fails in a second, with one line, and
leaves nothing behind.

`validate_run(cfg, resume)` is what `dashrl.train.loop.train` calls first; its writability probe
is `dashrl.runtime.io.writable_problem`, shared with `dashrl eval --out` and `distill`. Only the standard
library is imported at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dashrl.runtime.io import writable_problem

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import Config


def run_complete(cfg: "Config", run_dir: Path, ckpt: Path) -> bool:
    """Whether the run in `run_dir`, resuming from `ckpt`, has nothing left to do: the checkpoint
    is at the run's last optimizer step and `summary.md` (written last) exists, so a run
    stopped at its final step but before its summary still has to finish."""
    from dashrl.train.checkpoint import read_info
    from dashrl.train.schedules import optimizer_steps

    total = optimizer_steps(cfg.algo.name, cfg.train.steps, cfg.algo.ppo_k)
    return read_info(ckpt)["step"] >= total and (run_dir / "summary.md").is_file()


def validate_run(cfg: "Config", resume: bool | None = None) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to continue from (None for a fresh run), or
    `RunError` (or `DatasetError`) before any model loads if the run cannot go: an unwritable
    run folder, an evaluation set that does not load, a resume that clashes with the run in
    the folder, or a resume of a run that is already complete (its last checkpoint at
    train.steps and its summary.md written). The folder is named once, here: a run without
    `run.name` gets a timestamped one.

    >>> validate_run(load_config(overrides=["--run.out_dir", "/proc/nope"]))  # doctest: +SKIP
    Traceback (most recent call last):
    RunError: cannot write the run folder /proc/nope/dash-...: /proc is not writable (...)
    """
    from dashrl.train.run_dir import RunError, find_resume_point, resume_command, run_dir_of

    run_dir = run_dir_of(cfg)
    problem = writable_problem(run_dir)
    if problem:
        raise RunError(f"cannot write the run folder {run_dir}: {problem} (set --run.out_dir)")
    if ":" in cfg.algo.loss:  # a user's loss (file.py:Class): imported and built now, before any model loads
        from dashrl.algo.losses import loss_problem

        if problem := loss_problem(cfg.algo):
            raise RunError(problem)
    if ":" in cfg.select.name:  # a user's selector: imported and checked now, before any model loads
        from dashrl.select import SelectError, selector_class

        try:
            selector_class(cfg.select.name)
        except SelectError as e:
            raise RunError(str(e)) from None
    if cfg.env.enabled:  # the environment class and tools: imported and checked now, before any model loads
        from dashrl.env.loading import env_spec
        from dashrl.env.tools import EnvError

        try:
            env_spec(cfg.env)
        except EnvError as e:
            raise RunError(str(e)) from None
    if cfg.eval.dataset_names:
        from dashrl.train.evaluation import load_eval_sets

        load_eval_sets(cfg.eval.dataset_names, cfg.eval.limit, cfg.task.difficulty)
    ckpt = find_resume_point(cfg, run_dir, resume)
    if ckpt is None:
        return run_dir, None
    if run_complete(cfg, run_dir, ckpt):
        from dashrl.train.checkpoint import read_info

        raise RunError(
            f"run {run_dir} is complete: its checkpoint {ckpt.name} is at step {read_info(ckpt)['step']} of "
            f"train.steps {cfg.train.steps}; "
            f"to train it longer: {resume_command(run_dir)} --train.steps {cfg.train.steps + max(cfg.train.steps, 1)} "
            "(any number larger than the current one)"
        )
    return run_dir, ckpt
