"""Metrics file, console progress and the closing summary of a run."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO


class MetricsWriter:
    """Appends one JSON line per optimizer step to `metrics.jsonl`, flushed and fsynced.

    A failed write (a full disk) is cut back off the file, so the lines already there
    stay whole and the error propagates.
    """

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a")

    def write(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        end = self._f.tell()
        try:
            self._f.write(json.dumps(clean) + "\n")  # one write per line: a crash loses at most the last line
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError:
            self._rollback(end)
            raise

    def _rollback(self, end: int) -> None:
        try:
            self._f.close()  # drops what is still buffered (the flush may fail again)
        except OSError:
            pass
        try:
            os.truncate(self.path, end)
        except OSError:  # pragma: no cover - readers skip a torn last line anyway
            pass
        self._f = open(self.path, "a")

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:  # pragma: no cover - everything was fsynced line by line
            pass


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a metrics file, skipping a torn last line."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(path: Path, last_step: int) -> list[dict[str, Any]]:
    """Keep only the rows with `step <= last_step` (rewritten atomically); return them.

    A resume calls this with the checkpoint's step, so the steps run again after it are
    logged once, not twice, and a torn line left by a crash disappears.
    """
    from dashrl.train.checkpoint import atomic_write_text

    path = Path(path)
    if not path.is_file():
        return []
    kept_lines, rows = [], []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= last_step:
            kept_lines.append(line)
            rows.append(row)
    atomic_write_text(path, "".join(line + "\n" for line in kept_lines))
    return rows


class Loggers:
    """Sends each metrics row to TensorBoard, Weights & Biases and MLflow, as `names` asks.

    Never required: a logger whose package is missing, or that fails while logging, is
    dropped with one warning and the run goes on. TensorBoard event files go to
    `RUN/tensorboard`; on resume, events after the checkpoint's step are purged.

    >>> log = Loggers("tensorboard", Path("runs/x"), {"algo": {}}, first_step=1)  # doctest: +SKIP
    >>> log.log({"step": 1, "reward/mean": 0.5}); log.close()  # doctest: +SKIP
    """

    def __init__(self, names: str, run_dir: Path, config: dict[str, Any], first_step: int = 1, stream: TextIO = sys.stderr):
        self.stream = stream
        self._active: dict[str, Any] = {}
        for name in (n.strip() for n in names.split(",") if n.strip()):
            try:
                self._active[name] = _OPEN[name](run_dir, config, first_step)
            except ImportError as e:
                self._warn(f"{name} is not installed ({e.name or e}); logging without it (pip install {_PACKAGE[name]})")
            except Exception as e:  # a logger never stops a run
                self._warn(f"could not start {name} ({type(e).__name__}: {e}); logging without it")

    def _warn(self, msg: str) -> None:
        print(f"[dashrl] warning: {msg}", file=self.stream, flush=True)

    def log(self, row: dict[str, Any]) -> None:
        scalars = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        for name, logger in list(self._active.items()):
            try:
                logger.log(scalars, int(row["step"]))
            except Exception as e:
                self._warn(f"{name} failed ({type(e).__name__}: {e}); logging without it")
                self._active.pop(name)

    def close(self) -> None:
        for logger in self._active.values():
            try:
                logger.close()
            except Exception:  # pragma: no cover
                pass
        self._active.clear()


_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict[str, Any], first_step: int):
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs the package)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=first_step if first_step > 1 else None)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    """One W&B run per run folder: its id is kept in `RUN/wandb_id`, so a resume continues it."""

    def __init__(self, run_dir: Path, config: dict[str, Any], first_step: int):
        import wandb

        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dashrl"), name=run_dir.name, id=run_id, resume="allow", config=config, dir=str(run_dir))

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    """One MLflow run per run folder: its id is kept in `RUN/mlflow_id`, so a resume continues it."""

    def __init__(self, run_dir: Path, config: dict[str, Any], first_step: int):
        import mlflow

        self.mlflow = mlflow
        id_file = run_dir / "mlflow_id"
        if id_file.is_file():
            mlflow.start_run(run_id=id_file.read_text().strip())
        else:
            run = mlflow.start_run(run_name=run_dir.name)
            id_file.write_text(run.info.run_id + "\n")
            mlflow.log_params({f"{sec}.{k}": v for sec, vals in config.items() for k, v in vals.items()})

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


_OPEN = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


class Progress:
    """A one-line progress bar (or one plain line per step when quiet)."""

    def __init__(self, total: int, quiet: bool = False, stream: TextIO = sys.stderr, first_step: int = 1):
        self.total, self.quiet, self.stream = total, quiet, stream
        self.start = time.perf_counter()
        self.first_step = first_step  # a resumed run's ETA counts only the steps run here

    def update(self, row: dict[str, Any]) -> None:
        step = row["step"]
        text = (
            f"step {step}/{self.total} reward {_fmt(row.get('reward/mean'))} acc {_fmt(row.get('accuracy'))} "
            f"kept {_fmt(row.get('filter/kept_frac'))} | sample {row.get('time/sampling_s', 0):.1f}s "
            f"backprop {row.get('time/backprop_s', 0):.1f}s step {row.get('time/step_s', 0):.1f}s"
        )
        if row.get("skipped"):
            text += f" [skipped: {row['skipped']}]"
        if self.quiet:
            print(text, file=self.stream, flush=True)
            return
        width = 20
        done = int(width * step / max(self.total, 1))
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(step - self.first_step + 1, 1) * (self.total - step)
        print(f"\r[{'#' * done}{'.' * (width - done)}] {text} eta {eta:.0f}s ", end="", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.quiet:
            print(file=self.stream, flush=True)


def summarize(rows: Sequence[dict[str, Any]], window: int = 5) -> str:
    """Closing table: reward early vs late, seconds per step, and the time split."""
    if not rows:
        return "no steps recorded"
    w = max(1, min(window, len(rows) // 2 or 1))

    def mean(key: str, part: Sequence[dict[str, Any]]) -> float:
        vals = [r[key] for r in part if isinstance(r.get(key), (int, float))]
        return sum(vals) / len(vals) if vals else float("nan")

    total = sum(r.get("time/step_s", 0.0) for r in rows) or 1.0
    share = {k: sum(r.get(f"time/{k}_s", 0.0) for r in rows) / total for k in ("sampling", "scoring", "backprop", "optimizer", "sync")}
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| reward, first {w} steps | {mean('reward/mean', rows[:w]):.3f} |",
        f"| reward, last {w} steps | {mean('reward/mean', rows[-w:]):.3f} |",
        f"| accuracy, first / last {w} | {mean('accuracy', rows[:w]):.3f} / {mean('accuracy', rows[-w:]):.3f} |",
        f"| seconds per step | {total / len(rows):.1f} |",
        f"| samples kept by the filter | {mean('filter/kept_frac', rows):.1%} |",
    ] + [f"| time share: {k} | {v:.1%} |" for k, v in share.items()]
    return "\n".join(lines)
