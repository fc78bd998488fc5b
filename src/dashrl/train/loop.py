"""`dashrl train`: run an RL schedule on a task and leave a run folder behind.

The run folder holds the resolved `config.toml`, `metrics.jsonl` (one line per
optimizer step), TensorBoard events, and checkpoints (`dashrl.train.checkpoint`).

Resume: a run continues from its newest checkpoint with `dashrl train --resume RUN`,
or when `--run.name` names a folder that holds one. Weights, optimizer, LR schedule,
RNG states and the step counters are restored, and the problems and sampling seeds of a
step are pure functions of (seed, step), so on one CPU process the resumed run ends with
the same weights, bit for bit, as a run that was never stopped. Metrics rows after the
checkpoint are dropped and logged again. The PPO schedules (K optimizer steps per
sampling cycle) checkpoint only between cycles.

Stopping: the first Ctrl-C or SIGTERM finishes the current step, saves a checkpoint and
raises `Interrupted` (whose message gives the resume command); a second one abandons
the step at once and keeps the last checkpoint.

Departures from the paper: the default quickstart is SmolLM2-135M-Instruct on a
procedural arithmetic task (the paper: Qwen2.5-0.5B on MATH), so that a laptop CPU
shows learning in minutes; and `dash` samples on the same process's bf16 copy of the
weights instead of separate vLLM servers.

Scale: this one loop runs every schedule both in one process and on Ray
(`--dist.samplers H --dist.trainers H'`): the schedules talk to a rollout source and a
learner (`dashrl.train.schedules`), which `open_backend` builds as a `LocalSource` and a
`Learner` in this process (`local_backend`), or as Ray actors (`dashrl.distributed`). Run
folder, resume, signals, eval, loggers and checkpoints are the same on both.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashrl.runtime import kernels, openmp
from dashrl.config import Config, to_dict, to_toml
from dashrl.runtime.io import atomic_write_text
from dashrl.train.checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    load_state,
    load_weights,
    prune_checkpoints,
    read_info,
    rng_state,
    save_checkpoint,
    set_rng_state,
    step_dir,
    update_best,
)
from dashrl.train.evaluation import PeriodicEval, eval_env
from dashrl.train.metrics import Loggers, MetricsWriter, Progress, summarize, truncate_metrics
from dashrl.train.run_dir import (  # noqa: F401 - RESUMABLE_CHANGES, find_resume_point: the CLI's and study's names
    RESUMABLE_CHANGES,
    RunError,
    find_resume_point,
    resume_command,
    resume_hint,
    run_dir_of,
)


class Interrupted(RuntimeError):
    """Stopped by SIGINT/SIGTERM; the message says what was saved and how to resume."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


@dataclass
class RunResult:
    """What a finished run returns (`train`, and `dashrl.train` from Python): its folder, its
    metric rows (as in `metrics.jsonl`), the learner (whose `model` holds the final weights;
    `trainer` is its older name) and the rollout source.

    >>> result = dashrl.train({"train.steps": 2})  # doctest: +SKIP
    >>> result.run_dir, result.rows[-1]["reward/mean"]  # doctest: +SKIP
    (PosixPath('runs/dash-20261205-120000'), 0.4375)
    """

    run_dir: Path
    rows: list[dict[str, Any]]
    learner: Any
    source: Any = None

    @property
    def trainer(self) -> Any:
        return self.learner


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_env_rows(cfg: Config, task: Any) -> None:
    from dashrl.env.loading import check_rows, env_spec
    from dashrl.env.rollout import example_row
    from dashrl.env.tools import EnvError

    try:
        check_rows(task.env or env_spec(cfg.env), example_row(task.get(0)))
    except EnvError as e:
        raise RunError(str(e)) from None


def prepare_run(cfg: Config, model: Any, tokenizer: Any, task: Any) -> tuple[Any, Any, Any]:
    """The run's task, model and tokenizer: given ones are kept, missing ones built from `cfg`.

    The task comes first, so a bad dataset fails before a model loads.
    """
    if task is None:
        from dashrl.data.tasks import make_task
        from dashrl.rewards.funcs import RewardError

        try:
            task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward)
        except RewardError as e:
            raise RunError(str(e)) from None
    if cfg.env.enabled or getattr(task, "env", None) is not None:  # reset takes the task's rows: checked now
        _check_env_rows(cfg, task)
    if cfg.run.quiet:  # no transformers progress bars (loading, saving shards) in quiet runs
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    if model is None:
        from dashrl.models import load_model

        model, tokenizer = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    else:
        from dashrl.models import prepare_tokenizer, read_chat_template, use_chat_template

        use_chat_template(prepare_tokenizer(tokenizer), read_chat_template(cfg.model.chat_template))
    return model, tokenizer, task


# -- signals ------------------------------------------------------------------------------
class StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loop to stop after the current
    step; a second raises KeyboardInterrupt at once. Installed only in the main thread, and
    never over a signal the process was started with ignored (a shell script's background
    job ignores SIGINT, so that Ctrl-C on the script does not reach it: that stays so)."""

    def __init__(self, quiet: bool):
        self.signum: int | None = None
        self.quiet = quiet
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        print(
            f"\n[dashrl] {name}: finishing the current step, then saving (send it again to abandon the step)",
            file=sys.stderr,
            flush=True,
        )


# -- the loop -----------------------------------------------------------------------------
def train(
    cfg: Config, model: Any = None, tokenizer: Any = None, task: Any = None, resume: bool | None = None
) -> RunResult:
    """Train per `cfg`; `model`/`tokenizer`/`task` may be given (tests), else built from cfg.

    `resume`: None continues the run in the folder `cfg` names if it holds a checkpoint,
    True requires one, False refuses one. On resume the given (or loaded) model must be
    the run's initial model: the reference model for the KL term is copied from it.

    >>> from dashrl.config import load_config
    >>> train(load_config(overrides=["--train.steps", "2"]))  # doctest: +SKIP
    """
    openmp.apply()  # the OpenMP wait policy, before torch loads where the caller has not loaded it yet
    from dashrl.train.metrics import silence_transformers_bars
    from dashrl.train.preflight import validate_run

    started = time.perf_counter()  # time/startup_s runs from here to step 1
    run_dir, ckpt = validate_run(cfg, resume)  # before anything loads: one line, nothing left behind
    kernels.apply_cpu_isa(cfg.train.cpu_isa)  # before torch's first product (oneDNN reads it once)
    sft_data = None
    from dashrl.algo.registry import get as get_algorithm

    if get_algorithm(cfg.algo.name).supervised:  # a bad record: one line (file:line, field) before the model loads
        from dashrl.train.sft import load_sft_data

        sft_data = load_sft_data(cfg)
    silence_transformers_bars()  # the run's console is dashrl.train.metrics.Progress
    from dashrl.train.schedules import optimizer_steps, schedule_fn

    total_opt = optimizer_steps(cfg.algo.name, cfg.train.steps, cfg.algo.ppo_k)
    info = read_info(ckpt) if ckpt else {"step": 0, "cycle": 0, "elapsed_s": 0.0}
    if info["step"] > total_opt:
        raise RunError(
            f"{ckpt} is at step {info['step']}, past train.steps ({cfg.train.steps}); resume with a larger "
            "--train.steps"
        )
    mismatch = kernels.restore(info.get("kernels"))  # the thread count the run's steps so far ran with
    if mismatch:
        print(f"[dashrl] warning: {mismatch}", file=sys.stderr)

    seed_everything(cfg.train.seed)
    model, tokenizer, task = prepare_run(cfg, model, tokenizer, task)

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", to_toml(cfg))
    except OSError as e:
        raise RunError(f"cannot write the run folder {run_dir}: {e.strerror or e}") from None
    with open_backend(cfg, model, tokenizer, task, total_opt) as (source, learner):
        step_fn, select = schedule_fn(cfg), None
        if sft_data is not None:  # the same loop and learner; records instead of samples
            from dashrl.train.sft import SFTSource

            source = SFTSource(cfg, sft_data, tokenizer, source, learner)
        else:
            step_fn, select = with_selector(cfg, step_fn, source.task)
        return _run(cfg, run_dir, ckpt, info, total_opt, step_fn, source, learner, tokenizer, started, select)


def with_selector(cfg: Config, step_fn: Any, task: Any) -> tuple[Any, Any]:
    """The step function with the run's prompt selector (`dashrl.select`), and the selector; the
    default `uniform` is none, and the schedules draw the task's own batches."""
    import functools

    from dashrl.select import SelectError, make_selector

    try:
        select = make_selector(cfg.select, task, cfg.algo.prompts_per_step, cfg.train.seed)
    except SelectError as e:
        raise RunError(str(e)) from None
    return (step_fn if select is None else functools.partial(step_fn, select=select)), select


def open_backend(cfg: Config, model: Any, tokenizer: Any, task: Any, total_opt: int) -> Any:
    """A context giving `(RolloutSource, Learner)`: `local_backend`'s in this process, or
    sampler and trainer actors on Ray when `dist.samplers > 0` (`dashrl.distributed`)."""
    import contextlib

    if cfg.dist.samplers > 0:  # the trainer actors wrap the Learner (no sampler)
        from dashrl.distributed import ray_backend
        from dashrl.train.learner import Learner

        return ray_backend(cfg, model, tokenizer, task, total_opt, Learner)
    return contextlib.nullcontext(local_backend(cfg, model, tokenizer, total_opt, task))


def local_backend(cfg: Config, model: Any, tokenizer: Any, optimizer_steps: int, task: Any = None) -> tuple[Any, Any]:
    """The `(LocalSource, Learner)` of one process: the source samples on the learner's policy,
    and the learner's `sync` loads the source's sampler. `task` None: the one `cfg` names.

    >>> source, learner = local_backend(cfg, model, tokenizer, optimizer_steps=1)  # doctest: +SKIP
    >>> learner.backprop(source.rollout(source.task.batch(0, 2), seed=0).samples, norm)  # doctest: +SKIP
    """
    from dashrl.rollout.samples import LocalSource
    from dashrl.train.learner import Learner

    if task is None:
        from dashrl.data.tasks import make_task

        task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward)
    learner = Learner(cfg, model, tokenizer, optimizer_steps)
    source = LocalSource(cfg, learner.policy, tokenizer, task)
    learner.samplers.append(source.host)
    return source, learner


def _run(cfg: Config, run_dir: Path, ckpt: Path | None, info: dict, total_opt: int, step_fn: Any, source: Any,
         learner: Any, tokenizer: Any, started: float, select: Any = None) -> RunResult:  # fmt: skip
    """The loop proper: resume state, steps, eval, logs, checkpoints, signals, summary."""
    if ckpt is not None:
        best = best_checkpoint(run_dir)
        prune_checkpoints(run_dir, cfg.run.keep_last, keep=[best] if best else [])  # leftovers of a crash
        state = load_state(ckpt)
        load_weights(learner.policy, ckpt, state)
        learner.load_state_dict(state["trainer"])
        source.load_state_dict(state.get("source", state["trainer"]))  # older runs kept it in the learner's
        if select is not None:
            select.load_state_dict(state.get("select", {}))
        learner.sync()  # the samplers' own copies
        set_rng_state(state["rng"])
    try:
        rows = truncate_metrics(run_dir / "metrics.jsonl", info["step"])
    except OSError as e:
        raise RunError(f"cannot write {run_dir / 'metrics.jsonl'}: {e.strerror or e}") from None

    evaluator = PeriodicEval(cfg.eval, tokenizer, cfg.task.difficulty, *eval_env(cfg, getattr(source, "task", None)))
    opt_step, cycle, saved_step = info["step"], info["cycle"], info["step"] if ckpt else -1
    writer = MetricsWriter(run_dir / "metrics.jsonl")
    samples_log = _sample_log(cfg, run_dir, tokenizer, info["step"] if ckpt else 0)
    loggers = Loggers(cfg.run.loggers, run_dir, to_dict(cfg), first_step=opt_step + 1)
    if not cfg.run.quiet:
        verb = f"resuming {ckpt.name} of" if ckpt else "run folder"
        k = kernels.record()
        print(
            f"[dashrl] {verb} {run_dir} ({k['threads']} threads, {k['isa'] or 'cpu'}, {cfg.model.dtype}, "
            f"{openmp.apply()})",
            file=sys.stderr,
        )  # before the bar
    warm = time.perf_counter()
    source.warm_up()  # first calls of the grader and sampler: start-up's cost, not step 1's
    now = time.perf_counter()  # in this process's first row: the start-up, and the warm-up within it
    startup: dict[str, float] = {"time/startup_s": now - started, "time/warmup_s": now - warm}
    progress = Progress(total_opt, quiet=cfg.run.quiet, first_step=opt_step + 1)
    t_start, elapsed0 = time.perf_counter(), float(info.get("elapsed_s", 0.0))

    saving = False  # what a second signal abandons: a step, or the save of the last one

    def save(interrupted: bool = False) -> Path:
        nonlocal saved_step, saving
        saving = True
        path = _save(
            cfg,
            run_dir,
            (source, learner, select),
            rows,
            opt_step,
            cycle,
            elapsed0 + time.perf_counter() - t_start,
            interrupted,
        )
        saved_step, saving = opt_step, False
        return path

    try:
        with StopRequest(cfg.run.quiet) as stop:
            try:
                while cycle < cfg.train.steps and stop.signum is None:
                    new_rows = _guarded_step(step_fn, source, learner, cycle, opt_step, saved_step, run_dir)
                    cycle += 1
                    for i, row in enumerate(new_rows):
                        opt_step += 1
                        loggers.log_samples(samples_log.write(opt_step, row.pop("_samples", None)), opt_step)
                        if evaluator.due(opt_step, last=cycle == cfg.train.steps and i == len(new_rows) - 1):
                            row = {**row, **evaluator.run(source.eval_sampler())}
                        row = {
                            "step": opt_step,
                            **row,
                            "time/elapsed_s": elapsed0 + time.perf_counter() - t_start,
                            **startup,
                        }
                        startup = {}
                        _write_row(writer, row)
                        rows.append(row)
                        loggers.log(row)
                        progress.update(row)
                    every = cfg.run.save_every
                    if every and opt_step // every > max(saved_step, 0) // every and cycle < cfg.train.steps:
                        save()
                progress.close()
                path = (
                    save(interrupted=stop.signum is not None) if saved_step != opt_step else step_dir(run_dir, opt_step)
                )
            except KeyboardInterrupt:  # a second signal: abandon the step (or the save), keep the last checkpoint
                progress.close()
                what = f"the save of step {opt_step}" if saving else f"step {opt_step + 1}"
                raise Interrupted(f"abandoned {what}; {resume_hint(run_dir)}", stop.signum or signal.SIGINT) from None
            if stop.signum is not None:
                raise Interrupted(
                    f"stopped after step {opt_step} of {total_opt}; saved {path}; {resume_hint(run_dir)}", stop.signum
                )
    finally:
        writer.close()
        loggers.close()
    summary = summarize(rows)
    try:
        atomic_write_text(run_dir / "summary.md", summary + "\n")
    except OSError as e:
        raise RunError(
            f"cannot write {run_dir / 'summary.md'}: {e.strerror or e} (the run itself finished and is saved)"
        ) from None
    if not cfg.run.quiet:
        print(summary)
        print(f"[dashrl] checkpoint: {path}\n[dashrl] metrics: {run_dir / 'metrics.jsonl'}", file=sys.stderr)
    return RunResult(run_dir, rows, learner, source)


def _sample_log(cfg: Config, run_dir: Path, tokenizer: Any, last_step: int) -> Any:
    """The run's `samples.jsonl` writer; lines past `last_step` (a resume's checkpoint) are dropped."""
    from dashrl.train.sample_log import SAMPLES_FILE, SampleLog

    path = run_dir / SAMPLES_FILE
    try:
        if path.is_file() or last_step:
            truncate_metrics(path, last_step)
    except OSError as e:
        raise RunError(f"cannot write {path}: {e.strerror or e}") from None
    from dashrl.algo.registry import get

    threshold = cfg.algo.filter_threshold if get(cfg.algo.name).filters else None  # grpo filters nothing
    return SampleLog(run_dir, cfg.run.sample_groups, cfg.run.sample_log_mb, tokenizer, threshold)


def _guarded_step(
    step_fn: Any, source: Any, learner: Any, cycle: int, opt_step: int, saved_step: int, run_dir: Path
) -> list[dict[str, Any]]:
    """One step; a reward function's or an environment's fault stops the run in one line, the checkpoints untouched."""
    from dashrl.env.tools import EnvError
    from dashrl.rewards.funcs import RewardError
    from dashrl.select import SelectError

    try:
        return step_fn(source, learner, cycle)
    except (RewardError, SelectError, EnvError) as e:  # an environment's reset / get_reward / env_response too
        if saved_step >= 0:
            then = (
                f"the last checkpoint (step {saved_step}) is intact; fix the function and resume with: "
                f"{resume_command(run_dir)}"
            )
        else:
            then = "no checkpoint was saved yet; fix the function and run again"
        raise RunError(f"{e} at step {opt_step + 1}; {then}") from e


def _write_row(writer: MetricsWriter, row: dict[str, Any]) -> None:
    try:
        writer.write(row)
    except OSError as e:
        raise RunError(
            f"cannot write {writer.path}: {e.strerror or e}; the last checkpoint is intact; "
            f"free the space and resume with: {resume_command(writer.path.parent)}"
        ) from None


def _save(
    cfg: Config,
    run_dir: Path,
    parts: tuple[Any, Any, Any],
    rows: list[dict[str, Any]],
    step: int,
    cycle: int,
    elapsed: float,
    interrupted: bool,
) -> Path:
    """Save a resumable checkpoint, record it as best if it is, prune old ones. `parts`: the run's
    rollout source, learner and prompt selector (None without one)."""
    source, learner, select = parts
    trainer_state = learner.state_dict()  # on Ray: also pulls the weights into learner.policy
    keep = cfg.run.keep_state != "none"
    state = {"trainer": trainer_state, "source": source.state_dict(), "rng": rng_state()} if keep else None
    if state is not None and select is not None:
        state["select"] = select.state_dict()
    extra = {"cycle": cycle, "elapsed_s": elapsed, "interrupted": interrupted, "kernels": kernels.record()}
    try:
        path = save_checkpoint(run_dir, step, learner.policy, learner.tokenizer, extra, state, cfg.run.save_dtype)
        if cfg.run.best:
            value = next(
                (r[cfg.run.best] for r in reversed(rows) if isinstance(r.get(cfg.run.best), (int, float))), None
            )
            if value is not None:
                update_best(run_dir, path, cfg.run.best, float(value), cfg.run.best_mode)
        best = best_checkpoint(run_dir)
        prune_checkpoints(run_dir, cfg.run.keep_last, keep=[best] if best else [], keep_state=cfg.run.keep_state)
    except OSError as e:
        prev = latest_checkpoint(run_dir)
        kept = f"the last checkpoint ({prev.name}) is intact" if prev else "no checkpoint was saved yet"
        raise RunError(
            f"cannot save the checkpoint of step {step} in {run_dir / 'checkpoints'}: {e.strerror or e}; {kept}; "
            f"free the space and resume with: {resume_command(run_dir)}"
        ) from None
    return path
