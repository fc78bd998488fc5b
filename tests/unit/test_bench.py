"""Benchmark arithmetic: totals, rates and ratios from metrics rows (no timing asserted). Each
figure of a table is checked against the value the test computes from the rows by the formula."""

import math
import statistics

import pytest
from markdown_table import read_table, shows

from dashrl.bench.steps import summarize_variant, table

N_PARAMS, PER_STEP, PEAK = 1000, 8, 1e-3  # parameters, samples per step, GFLOP/s (small: MFUs in whole percents)
TIMES = ("sampling", "scoring", "backprop", "optimizer", "sync", "other")


def _rows(step_s, sampling_s, backprop_s, tokens, trained):
    """Two steps of a variant: the second 1.5x the first's times and tokens, a reward rising 0.2 -> 0.6."""
    return [
        {"time/step_s": k * step_s, "time/sampling_s": k * sampling_s, "time/backprop_s": k * backprop_s,
         "time/scoring_s": k * 0.1, "time/optimizer_s": 0.0, "time/sync_s": 0.0, "gen/sampled_tokens": k * tokens,
         "train/tokens": k * trained, "filter/kept_frac": kept, "reward/mean": r}
        for k, kept, r in ((1.0, 0.5, 0.2), (1.5, 0.75, 0.6))
    ]  # fmt: skip


def _expected(rows):
    """The figures of one variant, computed here from its rows by the formulas the bench states."""
    total = lambda key: sum(r[key] for r in rows)  # noqa: E731
    tok_s = total("gen/sampled_tokens") / total("time/sampling_s")
    trained_s = total("train/tokens") / total("time/backprop_s")
    return {
        "s_per_step": total("time/step_s") / len(rows),
        "s_per_sample": total("time/step_s") / (len(rows) * PER_STEP),
        "s_per_ktok": 1000 * total("time/step_s") / total("gen/sampled_tokens"),
        "sampled_tok_per_s": tok_s,
        "trained_tok_per_s": trained_s,
        "mfu_sample": 2 * N_PARAMS * tok_s / 1e9 / PEAK,  # 2 FLOPs per parameter per sampled token
        "mfu_backprop": 6 * N_PARAMS * trained_s / 1e9 / PEAK,  # 6 per trained token (forward + backward)
        "kept": total("filter/kept_frac") / len(rows),
        "rewards": [r["reward/mean"] for r in rows],
    }


WORKLOADS = {  # (step_s, sampling_s, backprop_s, sampled tokens, trained tokens) of the first step
    "grpo": (10.0, 8.0, 1.9, 400, 1000),
    "trl": (5.0, 3.0, 1.9, 400, 1000),
    "dash": (2.5, 1.0, 1.4, 300, 600),
}


def _summaries(names):
    rows = {v: _rows(*WORKLOADS[v]) for v in names}
    return rows, {v: summarize_variant(rows[v], n_params=N_PARAMS, samples_per_step=PER_STEP) for v in names}


def test_summary_is_the_rows_totals_and_rates():
    rows, summaries = _summaries(["grpo", "dash"])
    for v, r in summaries.items():
        e = _expected(rows[v])
        assert r["steps"] == 2
        for key in ("s_per_step", "s_per_sample", "s_per_ktok", "sampled_tok_per_s", "trained_tok_per_s", "kept_frac"):
            assert r[key] == pytest.approx(e["kept" if key == "kept_frac" else key])
        for part in TIMES:
            assert r[f"{part}_s"] == pytest.approx(sum(row.get(f"time/{part}_s", 0.0) for row in rows[v]))
        assert r["sampling_gflops"] / PEAK == pytest.approx(e["mfu_sample"])
        assert r["backprop_gflops"] / PEAK == pytest.approx(e["mfu_backprop"])
        assert (r["reward_first"], r["reward_last"]) == (0.2, 0.6) and r["reward_mean"] == pytest.approx(0.4)
    assert math.isnan(summarize_variant([], N_PARAMS, PER_STEP)["reward_first"])


@pytest.mark.parametrize("names", [["grpo", "dash"], ["grpo", "trl", "dash"]])
def test_table_shows_each_variants_figures_and_speed_ups_per_sample(names):
    rows, summaries = _summaries(names)
    md = table(summaries, peak=PEAK)
    bases = [b for b in ("grpo", "trl") if b in names]
    head = md.splitlines()[0]
    assert [h for h in head.split(" | ") if h.startswith("speed-up")] == [f"speed-up vs {b}" for b in bases]
    assert [h for h in head.split(" | ") if h.startswith("per token")] == [f"per token vs {b}" for b in bases]
    cells = read_table(md)
    assert list(cells) == names
    for v in names:
        c, e = cells[v], _expected(rows[v])
        for b in bases:  # time per sample of the base over this variant's: > 1 is faster
            assert shows(c[f"speed-up vs {b}"], _expected(rows[b])["s_per_sample"] / e["s_per_sample"])
            assert shows(c[f"per token vs {b}"], _expected(rows[b])["s_per_ktok"] / e["s_per_ktok"])
        assert shows(c["s/1k tok"], e["s_per_ktok"])
        assert shows(c["s/step"], e["s_per_step"]) and shows(c["s/sample"], e["s_per_sample"])
        assert shows(c["sampling s"], sum(r["time/sampling_s"] for r in rows[v]))
        assert shows(c["backprop s"], sum(r["time/backprop_s"] for r in rows[v]))
        assert shows(c["other s"], sum(r["time/scoring_s"] + r["time/optimizer_s"] for r in rows[v]))
        assert shows(c["kept"], e["kept"]) and shows(c["sampled tok/s"], e["sampled_tok_per_s"])
        assert shows(c["trained tok/s"], e["trained_tok_per_s"])
        assert shows(c["MFU sample"], e["mfu_sample"]) and shows(c["MFU backprop"], e["mfu_backprop"])
        first, last, mean = c["reward first -> last (mean)"].replace("->", " ").strip(")").replace("(", " ").split()
        assert (float(first), float(last), float(mean)) == pytest.approx((0.2, 0.6, 0.4))
    assert not shows("4.00x", 4.01) and shows("4.00x", 4.004)  # the reader itself: a wrong figure fails


def test_wordproblems_workload_is_the_papers_regime():
    """`--workload wordproblems`: 256-token completions on the word-problem task, through the real config loader."""
    import argparse

    from dashrl.bench.workloads import workload_flags
    from dashrl.cli.bench import add_arguments
    from dashrl.config import load_config

    p = argparse.ArgumentParser()
    add_arguments(p)

    def flags(argv):
        args = p.parse_args(argv)
        return workload_flags(args.workload, args.quick)

    cfg = load_config(None, flags(["--workload", "wordproblems"]))
    assert (cfg.task.name, cfg.sampler.max_new_tokens, cfg.sampler.temperature) == ("wordproblems", 256, 0.5)
    assert load_config(None, flags(["--quick"])).task.name == "arithmetic"
    assert load_config(None, flags([])).task.name == "gsm8k"


def test_quickstart_split_hand_computed():
    """Step 1 apart, the median of later steps, MFU and the ratio of step 1's time outside backprop."""
    from dashrl.bench.runs import split, split_table

    def row(samp, score, bp, opt, tokens, trained, **extra):
        return {"time/sampling_s": samp, "time/scoring_s": score, "time/backprop_s": bp, "time/optimizer_s": opt,
                "time/step_s": samp + score + bp + opt, "gen/sampled_tokens": tokens,
                "train/tokens": trained, **extra}  # fmt: skip

    rows = [
        row(4.0, 0.6, 5.0, 2.4, 1000, 1000, **{"time/startup_s": 7.0}),
        row(3.0, 0.0, 4.0, 0.2, 600, 800, **{"train/flops": 3e5}),
        row(3.0, 0.2, 6.0, 0.4, 600, 1600, **{"train/flops": 7e5}),
    ]
    s = split(rows, n_params=100, peak_gflops=1e-6)
    step1, later = rows[0], rows[1:]
    for part in ("sampling", "scoring", "backprop", "optimizer", "step"):
        assert s[f"step1_{part}"] == step1[f"time/{part}_s"]
        assert s[f"later_{part}"] == pytest.approx(statistics.median(r[f"time/{part}_s"] for r in later))
    assert s["startup"] == 7.0
    outside = ("sampling", "scoring", "optimizer")
    assert s["step1_outside_backprop_ratio"] == pytest.approx(
        sum(step1[f"time/{p}_s"] for p in outside) / sum(s[f"later_{p}"] for p in outside)
    )
    sampled_rate = sum(r["gen/sampled_tokens"] for r in later) / sum(r["time/sampling_s"] for r in later)
    assert s["sampled_tok_per_s"] == pytest.approx(sampled_rate)
    assert s["trained_tok_per_s"] == pytest.approx(sum(r["train/tokens"] for r in later) / 10.0)
    assert s["mfu_sampling"] == pytest.approx(2 * 100 * sampled_rate / (1e-6 * 1e9))
    flop_rate = (3e5 + 7e5) / (4.0 + 6.0)  # the passes' FLOPs (dashrl.runtime.flops), over the later steps' backprop
    assert s["mfu_backprop"] == pytest.approx(flop_rate / (1e-6 * 1e9))
    assert math.isnan(split(rows[:2] + [row(3.0, 0.2, 6.0, 0.4, 600, 1600)], 100, 1e-6)["mfu_backprop"])  # not logged
    before, after = dict(s, later_step=8.0), dict(s, later_step=3.2)
    cells = read_table(split_table({"before": before, "after": after}))
    assert list(cells) == ["before", "after"]
    assert shows(cells["after"]["later step vs before"], 8.0 / 3.2) and shows(
        cells["before"]["later step vs before"], 1
    )
    c = cells["after"]
    for part in ("sampling", "scoring", "backprop", "optimizer", "step"):
        first, _, rest = c[f"{part} s (step 1 / later)"].partition(" / ")
        assert shows(first, after[f"step1_{part}"]) and shows(rest, after[f"later_{part}"])
    assert shows(c["step 1 outside backprop / later"], s["step1_outside_backprop_ratio"])
    assert shows(c["start-up s"], 7.0) and shows(c["sampled tok/s"], sampled_rate)
    assert shows(c["MFU sampling"], s["mfu_sampling"]) and shows(c["MFU backprop"], s["mfu_backprop"])


def test_time_to_reward_level_and_ratio():
    from dashrl.bench.runs import time_to_level, ttr_summary, ttr_table

    assert time_to_level([1.0, 2.0, 3.0], [0.2, 0.6, 0.6], level=0.6, window=2) == (3.0, 3)
    assert time_to_level([1.0, 2.0, 3.0], [0.2, 0.6, 0.6], level=0.4, window=2) == (2.0, 2)
    rows = lambda dt, rs: [{"time/elapsed_s": dt * (i + 1), "reward/mean": r} for i, r in enumerate(rs)]  # noqa: E731
    dash = ttr_summary(rows(2.0, [0.0, 0.5, 1.0, 1.0]), level=0.75, window=2)
    trl = ttr_summary(rows(5.0, [0.0, 0.5, 1.0, 1.0]), level=0.75, window=2)
    never = ttr_summary(rows(5.0, [0.0, 0.0]), level=0.75, window=2)
    assert dash["ttr"] == (6.0, 3) and trl["ttr"] == (15.0, 3) and never["ttr"] is None
    slow = ttr_summary(rows(3.0, [0.0, 0.5, 0.5, 1.0, 1.0]), level=0.75, window=2)  # reaches at step 4
    per = {"dashrl": [dash, slow, never], "trl": [trl, trl, trl], "other": [never, never, dash]}
    cells = read_table(ttr_table(per, 0.75, 2))
    # dashrl: reached at 6.0 s and 12.0 s, one not: the upper median ranks "not reached" slowest -> 12.0
    assert cells["dashrl"]["repeats reaching 0.75"] == "2 of 3"
    assert cells["dashrl"]["time to 0.75: median (range), s"] == f"{12.0:.1f} ({6.0:.1f}-{12.0:.1f}), step 4"
    assert cells["trl"]["time to 0.75: median (range), s"] == f"{15.0:.1f} ({15.0:.1f}-{15.0:.1f}), step 3"
    assert cells["other"]["time to 0.75: median (range), s"] == "not reached in 2 steps"
    # seconds per step: dashrl 2.0, 3.0, 5.0 -> median 3.0; TRL 5.0
    assert cells["dashrl"]["s / step: median (range)"] == f"{3.0:.2f} ({2.0:.2f}-{5.0:.2f})"
    assert shows(cells["trl"]["time to 0.75: TRL / dashrl"], 15.0 / 12.0)
    assert shows(cells["trl"]["s / step: TRL / dashrl"], 5.0 / 3.0)
    assert cells["dashrl"]["time to 0.75: TRL / dashrl"] == "-" and cells["other"]["time to 0.75: TRL / dashrl"] == "-"
    first, best = cells["dashrl"]["rolling reward (2 steps) first -> best"].split(" -> ")  # the 12.0 s repeat
    assert shows(first, 0.0) and shows(best, (1.0 + 1.0) / 2)
    assert slow["ttr"] == (12.0, 4)


def test_before_must_be_a_checkout(tmp_path):
    from dashrl.bench.runs import src_of

    with pytest.raises(ValueError, match="holds no src/dashrl"):
        src_of(str(tmp_path))
    assert (src_of(None) / "dashrl" / "bench" / "runs.py").is_file()


def test_select_table_ratio_is_the_median_of_the_seeds_own_ratios():
    """Three seeds where the ratio of the medians (300 / 300 = 1.00x) and the median of the per-seed
    ratios (100/200, 300/150, 500/300 -> 0.50, 2.00, 1.67: 1.67x) differ: the table shows the paired one."""
    from dashrl.bench.select import select_table

    def seed(tokens):
        return {"tokens_per_group": tokens, "s_per_step": 1.0, "learnable_first": 0.5, "learnable_last": 0.9,
                "time_to_level": float("nan"), "skipped_share": 0.0}  # fmt: skip

    results = {"dapo_dynamic": [seed(t) for t in (100, 300, 500)], "dapo_greso": [seed(t) for t in (200, 150, 300)]}
    table = read_table(select_table(results, 0.9))
    assert table["dapo_greso"]["vs dapo_dynamic"] == "1.67x (0.50x-2.00x)"
    assert table["dapo_dynamic"]["vs dapo_dynamic"] == "1.00x (1.00x-1.00x)"
    assert table["dapo_greso"]["sampled tokens / trained group"] == "200 (150-300)"
    assert table["dapo_greso"]["s to learnable reward 0.90"] == "never"
