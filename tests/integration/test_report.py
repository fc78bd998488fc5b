"""`dashrl report` on finished runs writes real images with data in them, and a summary."""

from __future__ import annotations

import json

import pytest

from dashrl.cli import main
from dashrl.cli.report import PLOTS, ReportError, report

pytest.importorskip("matplotlib")


def fake_run(path, schedule: str, steps: int, slope: float) -> None:
    path.mkdir(parents=True)
    rows, t = [], 0.0
    for s in range(1, steps + 1):
        t += 2.0
        rows.append(
            {
                "step": s,
                "reward/mean": slope * s / steps,
                "accuracy": slope * s / steps / 2,
                "gen/mean_tokens": 40 + s,
                "adv/abs_mean": 0.5,
                "filter/kept_frac": 0.6,
                "time/step_s": 2.0,
                "time/sampling_s": 1.2,
                "time/scoring_s": 0.1,
                "time/backprop_s": 0.5,
                "time/optimizer_s": 0.1,
                "time/sync_s": 0.1,
                "time/elapsed_s": t,
            }
        )
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": ')  # torn tail
    (path / "config.toml").write_text(f'[algo]\nschedule = "{schedule}"\n')


def image_with_data(path):
    """The PNG decodes, is a sensible size, and is not one flat colour."""
    import matplotlib.image as mpimg
    import numpy as np

    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 400, img.shape
    rgb = img[..., :3]
    coloured = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.2  # plot lines and bars, not black/white/grey text
    assert coloured.mean() > 0.002, coloured.mean()
    assert np.unique(rgb.reshape(-1, 3), axis=0).shape[0] > 20
    return coloured.mean()


def test_report_overlays_several_runs(tmp_path):
    fake_run(tmp_path / "dash", "dash", 30, 1.0)
    fake_run(tmp_path / "grpo", "grpo", 30, 0.5)
    md = report([tmp_path / "dash", tmp_path / "grpo"], out=tmp_path / "cmp")
    for name in PLOTS:
        image_with_data(tmp_path / "cmp" / name)
    text = md.read_text()
    assert "| dash | dash | 30 |" in text and "| grpo | grpo | 30 |" in text
    assert "60% | 5% | 25% | 5% | 5% |" in text  # the time split of each step
    assert all(f"]({name})" in text for name in PLOTS)


def test_report_command_on_a_real_tiny_run(tmp_path, tiny_lm, capsys):
    from test_resume_errors import config
    from test_resume import letter_task

    from dashrl.train.loop import train

    model, tok = tiny_lm
    res = train(config(tmp_path, train={"steps": 4}), model, tok, task=letter_task())
    assert main(["report", str(res.run_dir)]) == 0
    out = res.run_dir / "report"
    assert capsys.readouterr().out.strip() == str(out / "report.md")
    for name in PLOTS:
        image_with_data(out / name)
    assert "| run | schedule | steps |" in (out / "report.md").read_text()


def test_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err.strip() == f"dashrl: run folder {tmp_path / 'missing'} does not exist"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="is not a run folder"):
        report([tmp_path / "empty"])


def test_report_and_closing_table_agree_on_early_and_late(tmp_path):
    from dashrl.train.metrics import read_metrics, summarize

    fake_run(tmp_path / "r", "dash", 30, 1.0)
    md = report([tmp_path / "r"], out=tmp_path / "out").read_text()
    table = summarize(read_metrics(tmp_path / "r" / "metrics.jsonl"))
    # reward s/30 for s = 1..30: first 5 steps mean 3/30 = 0.100, last 5 steps mean 28/30 = 0.933
    assert "| reward, first 5 steps | 0.100 |" in table and "| reward, last 5 steps | 0.933 |" in table
    assert "| 0.100 -> 0.933 |" in md
    assert "first and the last 5 steps" in md and "first and the last 5 steps" in table


def test_smoothed_curve_is_labelled_and_the_legend_leaves_the_bars_visible(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from dashrl.cli.report import _line_panels, _time_split, load_run

    fake_run(tmp_path / "r", "dash", 30, 1.0)
    run = load_run(tmp_path / "r")
    fig = _line_panels([run], [("reward/mean", "reward")], tmp_path / "a.png")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["r (per step)", "r (EMA, span 3 steps)"]
    fig = _time_split([run], tmp_path / "b.png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_height() > 0]
    assert len(bars) == 5  # sampling, scoring, backprop, optimizer, sync (no "other" time here)
    assert not any(legend.overlaps(b) for b in bars)


def test_a_full_disk_while_plotting_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    """Every picture is rendered in memory and renamed into place: a write that fails half-way
    (here the disk fills while a PNG is written) leaves the last report's files as they were."""
    import errno

    from matplotlib.figure import Figure

    fake_run(tmp_path / "a", "dash", 6, 1.0)
    out = tmp_path / "cmp"
    report([tmp_path / "a"], out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def torn(self, fname, *args, **kwargs):  # half a file, then the disk is full
        target = open(fname, "wb") if isinstance(fname, (str, bytes)) or hasattr(fname, "__fspath__") else fname
        target.write(b"\x89PNG\r\n")
        if target is not fname:
            target.close()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(ReportError, match="No space left on device"):
        report([tmp_path / "a"], out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no torn PNG, no temp file left
