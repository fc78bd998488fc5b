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
    """Appends one JSON line per optimizer step to `metrics.jsonl`, flushed and fsynced."""

    def __init__(self, path: Path):
        self.path = path
        self._f = open(path, "a")

    def write(self, row: dict[str, Any]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        self._f.write(json.dumps(clean) + "\n")  # one write per line: a crash loses at most the last line
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Read a metrics file, skipping a torn last line."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


class Progress:
    """A one-line progress bar (or one plain line per step when quiet)."""

    def __init__(self, total: int, quiet: bool = False, stream: TextIO = sys.stderr):
        self.total, self.quiet, self.stream = total, quiet, stream
        self.start = time.perf_counter()

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
        eta = elapsed / max(step, 1) * (self.total - step)
        print(f"\r[{'#' * done}{'.' * (width - done)}] {text} eta {eta:.0f}s ", end="", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.quiet:
            print(file=self.stream, flush=True)


def summarize(rows: Sequence[dict[str, Any]], window: int = 3) -> str:
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
