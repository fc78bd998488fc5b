"""`dashrl train`: run an RL schedule on a task and leave a run folder behind.

The run folder holds the resolved `config.toml`, `metrics.jsonl` (one line per
optimizer step) and checkpoints saved with `save_pretrained`.

Departures from the paper: the default quickstart is SmolLM2-135M-Instruct on a
procedural arithmetic task (the paper: Qwen2.5-0.5B on MATH), so that a laptop CPU
shows learning in minutes; and `dash` samples on the same process's bf16 copy of the
weights instead of separate vLLM servers (the Ray path is `dashrl.dist`).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashrl.config import Config, to_toml
from dashrl.train.checkpoint import atomic_write_text, save_checkpoint
from dashrl.train.metrics import MetricsWriter, Progress, summarize


@dataclass
class RunResult:
    run_dir: Path
    rows: list[dict[str, Any]]
    trainer: Any


def make_run_dir(cfg: Config) -> Path:
    name = cfg.run.name or f"{cfg.algo.schedule}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(cfg.run.out_dir) / name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise SystemExit(f"dashrl: cannot write the run folder {run_dir}: {e.strerror}") from None
    return run_dir


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(cfg: Config, model: Any = None, tokenizer: Any = None, task: Any = None) -> RunResult:
    """Train per `cfg`; `model`/`tokenizer`/`task` may be given (tests), else built from cfg.

    >>> from dashrl.config import load_config
    >>> train(load_config(overrides=["--train.steps", "2"]))  # doctest: +SKIP
    """
    if cfg.dist.samplers > 0:  # the Ray path: sampler and trainer actors
        from dashrl.dist import train_dist

        return train_dist(cfg, model, tokenizer, task)
    from dashrl.train.schedules import SCHEDULE_FNS, optimizer_steps
    from dashrl.train.trainer import Trainer

    run_dir = make_run_dir(cfg)
    atomic_write_text(run_dir / "config.toml", to_toml(cfg))
    seed_everything(cfg.train.seed)
    if model is None:
        from dashrl.models import load_model

        model, tokenizer = load_model(cfg.model.name, attn=cfg.model.attn)
    else:
        from dashrl.models import prepare_tokenizer

        prepare_tokenizer(tokenizer)

    total_opt = optimizer_steps(cfg.algo.schedule, cfg.train.steps, cfg.algo.ppo_k)
    trainer = Trainer(cfg, model, tokenizer, total_opt, task=task)
    step_fn = SCHEDULE_FNS[cfg.algo.schedule]
    writer = MetricsWriter(run_dir / "metrics.jsonl")
    progress = Progress(total_opt, quiet=cfg.run.quiet)
    rows: list[dict[str, Any]] = []
    opt_step = 0
    if not cfg.run.quiet:
        print(f"[dashrl] run folder {run_dir}", file=sys.stderr)
    try:
        for step in range(cfg.train.steps):
            for row in step_fn(trainer, step):
                opt_step += 1
                row = {"step": opt_step, **row}
                writer.write(row)
                rows.append(row)
                progress.update(row)
                if cfg.run.save_every and opt_step % cfg.run.save_every == 0 and opt_step < total_opt:
                    save_checkpoint(run_dir, opt_step, model, tokenizer)
    except KeyboardInterrupt:
        progress.close()
        path = save_checkpoint(run_dir, opt_step, model, tokenizer, {"interrupted": True})
        print(f"[dashrl] interrupted after step {opt_step}; weights saved to {path}", file=sys.stderr)
        writer.close()
        raise
    progress.close()
    writer.close()
    path = save_checkpoint(run_dir, opt_step, model, tokenizer)
    summary = summarize(rows)
    atomic_write_text(run_dir / "summary.md", summary + "\n")
    if not cfg.run.quiet:
        print(summary)
        print(f"[dashrl] checkpoint: {path}\n[dashrl] metrics: {run_dir / 'metrics.jsonl'}", file=sys.stderr)
    return RunResult(run_dir, rows, trainer)
