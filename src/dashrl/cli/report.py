"""`dashrl report`: PNG plots and a markdown summary of one or more run folders.

    dashrl report runs/dash-1                       # writes runs/dash-1/report/
    dashrl report runs/dash-1 runs/grpo-1 --out cmp # overlays both runs in cmp/

Plots (several runs share the axes, one colour per run):

- `reward_accuracy_step.png`, `reward_accuracy_time.png`: reward, accuracy and the training
  loss against optimizer step and against wall-clock minutes (an sft run has only the loss);
- `gen_length.png`: mean completion length in tokens;
- `advantage_filter.png`: mean |advantage| and the fraction of samples kept by the filter;
- `prompt_states.png` (runs with a prompt selector, `--select.name`): how many prompts are on a
  run of easy or of hard groups, or were informative on their last visit, and how many the
  selector skipped, per step;
- `time_split.png`: seconds per step split into sampling, scoring, backprop, optimizer,
  sync and the rest, stacked, one bar per run.

`report.md` holds a table comparing the runs and links the plots. Only the standard
library, and matplotlib when plotting, are imported.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from dashrl.runtime.io import save_figure

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PHASES = ("sampling", "scoring", "backprop", "optimizer", "sync")
SELECT_PLOT = "prompt_states.png"  # only for runs with a prompt selector
PLOTS = (
    "reward_accuracy_step.png",
    "reward_accuracy_time.png",
    "gen_length.png",
    "advantage_filter.png",
    "time_split.png",
)


class ReportError(RuntimeError):
    """A run folder cannot be read; the message names it."""


@dataclass
class Run:
    label: str
    path: Path
    rows: list[dict[str, Any]]
    config: dict[str, Any]

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(steps, values) of the rows that have a finite number for `key`."""
        pairs = [(r["step"], float(r[key])) for r in self.rows if _finite(r.get(key))]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def minutes(self) -> list[float]:
        """Wall-clock minutes at each row: `time/elapsed_s`, else the running sum of step times."""
        out, total = [], 0.0
        for r in self.rows:
            total += float(r.get("time/step_s") or 0.0)
            out.append((float(r["time/elapsed_s"]) if _finite(r.get("time/elapsed_s")) else total) / 60)
        return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def load_run(path: Path) -> Run:
    """Read a run folder's metrics.jsonl (skipping a torn line) and config.toml."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"run folder {path} does not exist")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{path} is not a run folder (no metrics.jsonl)")
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    if not rows:
        raise ReportError(f"{metrics} has no steps yet")
    config: dict[str, Any] = {}
    if (path / "config.toml").is_file():
        try:
            config = tomllib.loads((path / "config.toml").read_text())
        except tomllib.TOMLDecodeError:
            config = {}
    return Run(path.name, path, rows, config)


def _labels(paths: Sequence[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]


def _ema(values: list[float], n: int) -> list[float]:
    """Exponential moving average with span ~ n/10 (a no-op for short runs)."""
    if n < 20:
        return values
    alpha, out, acc = 2 / (max(n // 10, 2) + 1), [], values[0]
    for v in values:
        acc = alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def _line_panels(runs: list[Run], keys: Sequence[tuple[str, str]], path: Path, by_time: bool = False) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, (key, title) in zip(axes[0], keys):
        for i, run in enumerate(runs):
            color = f"C{i % 10}"
            steps, values = run.series(key)
            if not values:
                continue
            if by_time:
                minute_at = dict(zip([r["step"] for r in run.rows], run.minutes()))
                xs = [minute_at[s] for s in steps]
            else:
                xs = steps
            smooth = _ema(values, len(values))
            if smooth is not values:
                ax.plot(xs, values, color=color, alpha=0.25, linewidth=1, label=f"{run.label} (per step)")
                label = f"{run.label} (EMA, span {max(len(values) // 10, 2)} steps)"
            else:
                label = run.label
            ax.plot(
                xs, smooth, color=color, linewidth=2, label=label, marker="o" if len(xs) < 20 else None, markersize=3
            )
        ax.set_title(title)
        ax.set_xlabel("wall-clock minutes" if by_time else "optimizer step")
        ax.grid(alpha=0.3)
    labelled = next((ax for ax in axes[0] if ax.get_legend_handles_labels()[0]), None)
    if labelled is not None:  # an sft run has no reward curve to label
        labelled.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return fig  # closed, still inspectable (tests read its legend)


def _time_split(runs: list[Run], path: Path) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(runs) + 3) + 1.5, 4))
    bottoms = [0.0] * len(runs)
    x = list(range(len(runs)))
    for j, phase in enumerate(list(PHASES) + ["other"]):
        heights = []
        for run in runs:
            n = len(run.rows)
            if phase == "other":
                step = sum(float(r.get("time/step_s") or 0) for r in run.rows)
                parts = sum(float(r.get(f"time/{p}_s") or 0) for r in run.rows for p in PHASES)
                heights.append(max(step - parts, 0.0) / n)
            else:
                heights.append(sum(float(r.get(f"time/{phase}_s") or 0) for r in run.rows) / n)
        ax.bar(x, heights, bottom=bottoms, label=phase, color=f"C{j}")
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_xticks(x, [r.label for r in runs], rotation=15)
    ax.set_ylabel("seconds per optimizer step")
    ax.set_title("time split")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)
    return fig  # closed, still inspectable (tests read its legend)


def plot(runs: list[Run], out: Path) -> list[Path]:
    """Write the PNG plots of `runs` into `out`; returns their paths."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError("plots need matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    reward = [("reward/mean", "reward"), ("accuracy", "accuracy"), ("loss", "training loss")]
    _line_panels(runs, reward, out / PLOTS[0])
    _line_panels(runs, reward, out / PLOTS[1], by_time=True)
    _line_panels(runs, [("gen/mean_tokens", "completion length (tokens)")], out / PLOTS[2])
    _line_panels(
        runs, [("adv/abs_mean", "mean |advantage|"), ("filter/kept_frac", "kept by the filter")], out / PLOTS[3]
    )
    _time_split(runs, out / PLOTS[4])
    paths = [out / name for name in PLOTS]
    if any("select/prompts_easy" in r for run in runs for r in run.rows):  # a prompt selector's history
        states = [(f"select/prompts_{s}", f"prompts {s} on their last visits") for s in ("easy", "hard")]
        states += [("select/prompts_informative", "prompts informative last time"), ("select/skipped", "skipped")]
        _line_panels(runs, states, out / SELECT_PLOT)
        paths.append(out / SELECT_PLOT)
    return paths


def _arrow(pair: tuple[float, float]) -> str:
    """`first -> last`, or `-` for a metric the run does not log (an sft run has no reward)."""
    return "-" if all(math.isnan(v) for v in pair) else f"{pair[0]:.3f} -> {pair[1]:.3f}"


def markdown(runs: list[Run], plots: Sequence[Path], out: Path) -> str:
    """A table comparing the runs (early vs late: `dashrl.train.metrics.first_last`, the same
    definition as a run's closing table) and links to the plots."""
    from dashrl.train.metrics import WINDOW_RULE, first_last

    header = [
        "run",
        "schedule",
        "steps",
        "reward first -> last",
        "accuracy first -> last",
        "loss first -> last",
        "kept",
        "s/step",
        "wall min",
    ]
    header += [f"{p} %" for p in PHASES]
    lines = ["# dashrl report", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in runs:
        n = len(run.rows)
        step_s = sum(float(r.get("time/step_s") or 0) for r in run.rows)
        shares = [sum(float(r.get(f"time/{p}_s") or 0) for r in run.rows) / (step_s or 1) for p in PHASES]
        kept = [float(r["filter/kept_frac"]) for r in run.rows if _finite(r.get("filter/kept_frac"))]
        reward, acc, loss = (
            first_last(run.rows, "reward/mean"),
            first_last(run.rows, "accuracy"),
            first_last(run.rows, "loss"),
        )
        cells = [
            run.label,
            str(
                run.config.get("algo", {}).get("name") or run.config.get("algo", {}).get("schedule", "?")
            ),  # schedule: runs before algo.name
            str(run.rows[-1]["step"]),
            _arrow(reward),
            _arrow(acc),
            _arrow(loss),
            f"{sum(kept) / len(kept):.1%}" if kept else "-",
            f"{step_s / n:.2f}",
            f"{run.minutes()[-1]:.1f}",
        ] + [f"{s:.0%}" for s in shares]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"first -> last: {WINDOW_RULE}, as in each run's closing table. Runs:"]
    lines += [f"- `{run.label}`: {run.path}" for run in runs]
    lines.append("")
    for p in plots:
        lines += [f"![{p.stem}]({p.relative_to(out)})", ""]
    lines += _samples_section(runs)
    return "\n".join(lines)


def _samples_section(runs: list[Run], groups: int = 2) -> list[str]:
    """The last `groups` logged groups of each run's samples.jsonl (`dashrl.train.sample_log`)."""
    from dashrl.train.sample_log import SAMPLES_FILE, markdown_table, read_samples

    out = []
    for run in runs:
        records = read_samples(run.path / SAMPLES_FILE, groups)
        if records:
            out += [
                f"## What `{run.label}` wrote (last {len(records)} logged groups of {SAMPLES_FILE})",
                "",
                markdown_table(records),
                "",
            ]
    return out


def report(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Write plots and `report.md` for `run_dirs` into `out` (default RUN/report for one run,
    `./report` for several); returns the markdown path.

    >>> report(["runs/dash-1", "runs/grpo-1"], out="cmp")  # doctest: +SKIP
    PosixPath('cmp/report.md')
    """
    paths = [Path(p) for p in run_dirs]
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, _labels(paths)):
        run.label = label
    target = Path(out) if out is not None else (paths[0] / "report" if len(paths) == 1 else Path("report"))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create the report folder {target}: {e.strerror or e}") from None
    from dashrl.runtime.io import atomic_write_text

    try:
        plots = plot(runs, target)
        md = target / "report.md"
        atomic_write_text(md, markdown(runs, plots, target) + "\n")
    except OSError as e:
        raise ReportError(f"cannot write the report in {target}: {e.strerror or e}") from None
    return md


# -- command line -------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (with metrics.jsonl); several overlay")
    p.add_argument(
        "--out", help="folder for the plots and report.md (default RUN_DIR/report, or ./report for several runs)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        md = report(args.runs, args.out)
    except ReportError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 1
    print(md)
    return 0
