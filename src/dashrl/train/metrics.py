"""Metrics file, console progress and the closing summary of a run."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from dashrl.runtime.io import atomic_write_text


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

    def __init__(
        self, names: str, run_dir: Path, config: dict[str, Any], first_step: int = 1, stream: TextIO | None = None
    ):
        self.stream = stream or sys.stderr  # looked up per run, not bound once at import (a caller may swap sys.stderr)
        self._active: dict[str, Any] = {}
        for name in (n.strip() for n in names.split(",") if n.strip()):
            try:
                self._active[name] = _OPEN[name](run_dir, config, first_step)
            except ImportError as e:
                self._warn(
                    f"{name} is not installed ({e.name or e}); logging without it (pip install {_PACKAGE[name]})"
                )
            except Exception as e:  # a logger never stops a run
                self._warn(f"could not start {name} ({type(e).__name__}: {e}); logging without it")

    def _warn(self, msg: str) -> None:
        print(f"[dashrl] warning: {msg}", file=self.stream, flush=True)

    def log(self, row: dict[str, Any]) -> None:
        scalars = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        }
        for name, logger in list(self._active.items()):
            try:
                logger.log(scalars, int(row["step"]))
            except Exception as e:
                self._warn(f"{name} failed ({type(e).__name__}: {e}); logging without it")
                self._active.pop(name)

    def log_samples(self, records: list[dict[str, Any]], step: int) -> None:
        """The step's logged groups (`dashrl.train.sample_log`) as a table, for loggers that show one."""
        if not records:
            return
        for name, logger in list(self._active.items()):
            if hasattr(logger, "table"):
                try:
                    logger.table(records, step)
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

    def table(self, records: list[dict[str, Any]], step: int) -> None:
        from dashrl.train.sample_log import markdown_table

        self.writer.add_text("samples", markdown_table(records), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandB:
    """One W&B run per run folder: its id is kept in `RUN/wandb_id`, so a resume continues it."""

    def __init__(self, run_dir: Path, config: dict[str, Any], first_step: int):
        import wandb

        id_file = run_dir / "wandb_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
        atomic_write_text(id_file, run_id + "\n")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "dashrl"),
            name=run_dir.name,
            id=run_id,
            resume="allow",
            config=config,
            dir=str(run_dir),
        )

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.run.log(scalars, step=step)

    def table(self, records: list[dict[str, Any]], step: int) -> None:
        import wandb

        cols = ["step", "group", "prompt", "completion", "reward", "advantage", "kept"]
        rows = [
            [r["step"], r["group"], r["prompt"], c["text"], c["reward"], c["advantage"], c["kept"]]
            for r in records
            for c in r["completions"]
        ]
        self.run.log({"samples": wandb.Table(columns=cols, data=rows)}, step=step)

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
            atomic_write_text(id_file, run.info.run_id + "\n")
            mlflow.log_params({f"{sec}.{k}": v for sec, vals in config.items() for k, v in vals.items()})

    def log(self, scalars: dict[str, float], step: int) -> None:
        self.mlflow.log_metrics({k.replace("/", "."): v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


_OPEN = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _seconds(v: float) -> str:
    return f"{v:.0f}s" if v < 100 else f"{v / 60:.0f}m" if v < 6000 else f"{v / 3600:.1f}h"


def step_text(row: dict[str, Any], total: int, width: int = 80, eta: float | None = None) -> str:
    """One step as a line of at most `width` characters: the step, then as many of reward,
    accuracy, kept fraction, seconds per step, ETA, sampling and backprop seconds as fit, in that order
    (a skipped step always says so).

    >>> step_text({"step": 3, "reward/mean": 0.5, "time/step_s": 2.0}, 30, width=30)
    'step 3/30 reward 0.500 acc -'
    """
    parts = [f"step {row['step']}/{total}"]
    if row.get("skipped"):
        parts.append(f"[skipped: {row['skipped']}]")
    kept = row.get("filter/kept_frac")
    if "reward/mean" not in row and "loss" in row:  # supervised steps (the sft schedule) sample nothing
        parts.append(f"loss {_fmt(row['loss'])}")
    else:
        parts += [
            f"reward {_fmt(row.get('reward/mean'))}",
            f"acc {_fmt(row.get('accuracy'))}",
            f"kept {kept:.0%}" if isinstance(kept, (int, float)) else "kept -",
        ]
    parts += [
        f"| {row.get('time/step_s', 0):.1f}s/step",
        *([f"eta {_seconds(eta)}"] if eta is not None else []),
        f"sample {row.get('time/sampling_s', 0):.1f}s",
        f"backprop {row.get('time/backprop_s', 0):.1f}s",
    ]
    text = parts[0]
    for part in parts[1:]:
        if len(text) + 1 + len(part) > width:
            break
        text += " " + part
    return text[:width]


def silence_transformers_bars() -> None:
    """Turn off transformers' and huggingface_hub's own tqdm bars ("Writing model shards",
    "Loading weights"), which would break the run's progress line and fill log files."""
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # dashrl's decode loops pass `past_key_values`, the name every transformers version it
    # supports takes (vLLM's CPU build pins an older one); newer ones warn about it per call.
    warnings.filterwarnings("ignore", message=r".*`past_key_values` is deprecated", category=FutureWarning)
    hf_logging.get_logger("transformers")  # make sure transformers' own handler exists
    for handler in logging.getLogger("transformers").handlers:
        handler.addFilter(_not_cache_rename)


def _not_cache_rename(record: Any) -> bool:
    return "`past_key_values`/`cache_params` are deprecated" not in record.getMessage()


class Progress:
    """The run's console: a tqdm bar sized to the terminal on a TTY, else (or when quiet)
    one plain line per step, each at most the terminal width (80 without a terminal).

    >>> import sys
    >>> p = Progress(2, quiet=True, stream=sys.stdout); p.update({"step": 1, "reward/mean": 0.5}); p.close()
    step 1/2 reward 0.500 acc - kept - | 0.0s/step eta ...
    """

    def __init__(self, total: int, quiet: bool = False, stream: TextIO | None = None, first_step: int = 1):
        import shutil

        self.total, self.quiet, self.stream = total, quiet, stream or sys.stderr
        self.start = time.perf_counter()
        self.first_step = first_step  # a resumed run's ETA counts only the steps run here
        self.width = shutil.get_terminal_size((80, 24)).columns
        self.bar: Any = None
        if "transformers" in sys.modules:  # a run has it loaded; a bare Progress needs no import
            silence_transformers_bars()
        if not quiet and _isatty(self.stream):
            from tqdm import tqdm

            # "12/30 |#####     | 01:02<03:04 " then the metrics text in what is left of the line
            self.bar = tqdm(total=total, initial=first_step - 1, file=self.stream, dynamic_ncols=True, leave=True,
                            mininterval=0,
                            bar_format="{n_fmt}/{total_fmt} |{bar:10}| {elapsed}<{remaining} {desc}")  # fmt: skip

    def update(self, row: dict[str, Any]) -> None:
        step = row["step"]
        if self.bar is not None:
            import shutil

            room = shutil.get_terminal_size((self.width, 24)).columns - 2 * len(str(self.total)) - 25
            text = step_text(row, self.total, max(room, 12) + len(f"step {step}/{self.total} "))
            self.bar.set_description_str(text.split(" ", 2)[2] if text.count(" ") >= 2 else "", refresh=False)
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.start
        eta = elapsed / max(step - self.first_step + 1, 1) * (self.total - step)
        print(step_text(row, self.total, self.width, eta=eta), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# The one definition of "early" and "late" that the closing table and `dashrl report` share.
WINDOW_RULE = "means over the first and the last 5 steps (each half of the run when it has under 10 steps)"


def window(n: int) -> int:
    """Steps in each of the early and late windows of an `n`-step run.

    >>> window(30), window(6), window(1)
    (5, 3, 1)
    """
    return max(1, min(5, n // 2))


def steps_label(w: int) -> str:
    """`1 -> "step"`, `5 -> "5 steps"`."""
    return "step" if w == 1 else f"{w} steps"


def first_last(rows: Sequence[dict[str, Any]], key: str) -> tuple[float, float]:
    """Mean of `key` over the first and over the last `window(len(rows))` rows (NaN if absent).

    >>> first_last([{"r": float(i)} for i in range(10)], "r")
    (2.0, 7.0)
    """
    w = window(len(rows))

    def mean(part: Sequence[dict[str, Any]]) -> float:
        vals = [
            float(r[key]) for r in part if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)
        ]
        vals = [v for v in vals if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else float("nan")

    return mean(rows[:w]), mean(rows[-w:])


def summarize(rows: Sequence[dict[str, Any]]) -> str:
    """Closing table: reward early vs late (`first_last`), seconds per step, and the time split.
    A run without rewards (the sft schedule) shows its loss early vs late instead.

    >>> print(summarize([{"loss": 2.0, "time/step_s": 1.0}, {"loss": 1.0, "time/step_s": 1.0}]).splitlines()[2])
    | loss, first step | 2.000 |
    """
    if not rows:
        return "no steps recorded"
    w = steps_label(window(len(rows)))
    if not any("reward/mean" in r for r in rows):
        return _loss_summary(rows, w)
    reward, acc = first_last(rows, "reward/mean"), first_last(rows, "accuracy")
    kept = [r["filter/kept_frac"] for r in rows if isinstance(r.get("filter/kept_frac"), (int, float))]
    total = sum(r.get("time/step_s", 0.0) for r in rows) or 1.0
    share = {
        k: sum(r.get(f"time/{k}_s", 0.0) for r in rows) / total
        for k in ("sampling", "scoring", "backprop", "optimizer", "sync")
    }
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| reward, first {w} | {reward[0]:.3f} |",
        f"| reward, last {w} | {reward[1]:.3f} |",
        *_func_lines(rows, w),
        *(
            [f"| accuracy, first / last {w} | {acc[0]:.3f} / {acc[1]:.3f} |"]
            if any("accuracy" in r for r in rows)
            else []
        ),
        f"| seconds per step | {total / len(rows):.1f} |",
        f"| samples kept by the filter | {(sum(kept) / len(kept) if kept else float('nan')):.1%} |",
    ] + [f"| time share: {k} | {v:.1%} |" for k, v in share.items()]
    return "\n".join(lines) + f"\n\nfirst / last: {WINDOW_RULE}."


def _func_lines(rows: Sequence[dict[str, Any]], w: str) -> list[str]:
    """One line per reward function (`reward/<name>`), first / last; none for the task's own reward.

    >>> _func_lines([{"reward/mean": 1.0, "reward/std": 0.0, "reward/fmt": 0.5}], "step")
    ['| reward/fmt, first / last step | 0.500 / 0.500 |']
    """
    names = sorted({k for r in rows for k in r if k.startswith("reward/") and k not in ("reward/mean", "reward/std")})
    return [f"| {k}, first / last {w} | {first_last(rows, k)[0]:.3f} / {first_last(rows, k)[1]:.3f} |" for k in names]


def _loss_summary(rows: Sequence[dict[str, Any]], w: str) -> str:
    """`summarize` for runs that sample nothing: loss early vs late, eval, time split."""
    loss = first_last(rows, "loss")
    total = sum(r.get("time/step_s", 0.0) for r in rows) or 1.0
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| loss, first {w} | {loss[0]:.3f} |",
        f"| loss, last {w} | {loss[1]:.3f} |",
    ]
    for key in sorted({k for r in rows for k in r if k.startswith("eval/") and k.endswith("/accuracy")}):
        last = next(r[key] for r in reversed(rows) if isinstance(r.get(key), (int, float)))
        lines.append(f"| {key}, last | {last:.3f} |")
    lines.append(f"| seconds per step | {total / len(rows):.1f} |")
    lines += [
        f"| time share: {k} | {sum(r.get(f'time/{k}_s', 0.0) for r in rows) / total:.1%} |"
        for k in ("backprop", "optimizer")
    ]
    return "\n".join(lines) + f"\n\nfirst / last: {WINDOW_RULE}."
