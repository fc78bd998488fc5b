"""The study's figures (matplotlib, imported here only): seed 0 of each arm.

- `reward_time.png`: training reward per sampling cycle against training minutes, per RL arm;
- `abs_adv.png`: mean |A| of the samples trained on, DASH (filtering) against No-GF, and
  DASH's kept fraction;
- `gen_length_kl.png`: mean sampled tokens per step, DASH (with KL) against No-KL;
- `pass_at_k.png`: pass@k against k on the in-distribution set, every evaluated arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dashrl import stats
from dashrl.runtime.io import save_figure
from dashrl.study.findings import ArmResult, curve, step_seconds, trained_abs_adv

FIGURES = ("reward_time.png", "abs_adv.png", "gen_length_kl.png", "pass_at_k.png")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:  # an arm that did not run leaves a panel empty
        ax.legend(fontsize=8)


def draw(results: dict[str, ArmResult], out: Path, id_set: str) -> list[str]:
    """Write the four PNGs into `out`; returns their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rl = [a for a in results.values() if a.rows and a.name not in ("sft_h", "sft_m")]

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, arm in enumerate(rl):
        minutes = [t / 60 for t in stats.cumulative(step_seconds(arm.rows[0]))]
        ys = curve(arm.rows[0])
        ax.plot(minutes[: len(ys)], ys, marker=".", color=f"C{i}", label=arm.label)
    ax.set(
        xlabel="training minutes (evaluation and saves excluded)",
        ylabel="training reward",
        title="Reward against wall-clock",
    )
    _legend(ax)
    _save(fig, out / FIGURES[0])

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, name in enumerate(("dash", "nogf")):
        arm = results.get(name)
        if arm and arm.rows:
            ys = trained_abs_adv(arm.rows[0])
            a1.plot(range(1, len(ys) + 1), ys, marker=".", color=f"C{i}", label=arm.label)
            kept = curve(arm.rows[0], "filter/kept_frac")
            a2.plot(range(1, len(kept) + 1), kept, marker=".", color=f"C{i}", label=arm.label)
    a1.set(xlabel="step", ylabel="mean |A| of trained samples", title="|advantage| with and without filtering")
    a2.set(xlabel="step", ylabel="kept fraction", title="samples trained on", ylim=(0, 1.05))
    _legend(a1)
    _legend(a2)
    _save(fig, out / FIGURES[1])

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(("dash", "dash_nokl")):
        arm = results.get(name)
        if arm and arm.rows:
            ys = curve(arm.rows[0], "gen/mean_tokens")
            ax.plot(range(1, len(ys) + 1), ys, marker=".", color=f"C{i}", label=arm.label)
    ax.set(xlabel="step", ylabel="mean sampled tokens", title="Generation length with and without KL")
    _legend(ax)
    _save(fig, out / FIGURES[2])

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, arm in enumerate(a for a in results.values() if a.evals):
        ks = sorted(arm.evals[0]["pass_at_k"], key=int)
        ys = [sum(e["pass_at_k"][k] for e in arm.evals) / len(arm.evals) for k in ks]
        ax.plot([int(k) for k in ks], ys, marker="o", color=f"C{i % 10}", label=arm.label)
    ax.set_xscale("log", base=2)
    ax.set(xlabel="k", ylabel=f"pass@k on {id_set}", title="pass@k (unbiased estimator)")
    _legend(ax)
    _save(fig, out / FIGURES[3])
    return list(FIGURES)
