"""Benchmark arithmetic: totals, rates and ratios from metrics rows (no timing asserted)."""

import math
from dashrl.bench.steps import summarize_variant, table


def _rows(step_s, sampling_s, backprop_s, tokens, trained):
    return [
        {"time/step_s": step_s, "time/sampling_s": sampling_s, "time/backprop_s": backprop_s, "time/scoring_s": 0.0,
         "time/optimizer_s": 0.0, "time/sync_s": 0.0, "gen/sampled_tokens": tokens, "train/tokens": trained,
         "filter/kept_frac": 0.5, "reward/mean": r}
        for r in (0.2, 0.4)
    ]  # fmt: skip


def test_summary_and_ratios():
    grpo = summarize_variant(_rows(10.0, 8.0, 2.0, 400, 1000), n_params=1000, samples_per_step=8)
    dash = summarize_variant(_rows(2.5, 1.0, 1.5, 400, 600), n_params=1000, samples_per_step=8)
    assert grpo["s_per_step"] == 10.0 and grpo["s_per_sample"] == 10.0 / 8
    assert grpo["sampled_tok_per_s"] == 800 / 16 and dash["trained_tok_per_s"] == 1200 / 3
    assert dash["sampling_gflops"] == 2 * 1000 * 800 / 2.0 / 1e9
    assert (grpo["reward_first"], grpo["reward_last"]) == (0.2, 0.4)
    md = table({"grpo": grpo, "dash": dash}, peak=1.0)
    assert "| dash | 2.5 | 0.312 | 4.00x |" in md and "| grpo | 10.0 | 1.250 | 1.00x |" in md


def test_ratios_against_trl_when_present():
    grpo = summarize_variant(_rows(10.0, 8.0, 2.0, 400, 1000), n_params=1000, samples_per_step=8)
    trl = summarize_variant(_rows(5.0, 3.0, 2.0, 400, 1000), n_params=1000, samples_per_step=8)
    dash = summarize_variant(_rows(2.5, 1.0, 1.5, 400, 600), n_params=1000, samples_per_step=8)
    md = table({"grpo": grpo, "trl": trl, "dash": dash}, peak=1.0)
    assert "| speed-up vs grpo | speed-up vs trl |" in md
    assert "| dash | 2.5 | 0.312 | 4.00x | 2.00x |" in md and "| trl | 5.0 | 0.625 | 2.00x | 1.00x |" in md


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
        row(3.0, 0.0, 4.0, 0.2, 600, 800, **{"train/distinct_tokens": 300}),
        row(3.0, 0.2, 6.0, 0.4, 600, 1600, **{"train/distinct_tokens": 700}),
    ]
    s = split(rows, n_params=100, peak_gflops=1e-6)
    assert (s["step1_optimizer"], s["later_optimizer"], s["later_backprop"], s["startup"]) == (
        2.4,
        0.30000000000000004,
        5.0,
        7.0,
    )
    assert s["step1_outside_backprop_ratio"] == (4.0 + 0.6 + 2.4) / (3.0 + 0.1 + 0.30000000000000004)
    assert s["sampled_tok_per_s"] == 1200 / 6.0 and s["trained_tok_per_s"] == 2400 / 10.0
    assert abs(s["mfu_backprop"] - 6 * 100 * (1000 / 10.0) / 1e3) < 1e-9  # each group's prompt once
    assert math.isnan(split(rows[:2] + [row(3.0, 0.2, 6.0, 0.4, 600, 1600)], 100, 1e-6)["mfu_backprop"])  # not logged
    before = dict(s, later_step=8.0)
    after = dict(s, later_step=4.0)
    assert "| after |" in split_table({"before": before, "after": after}).splitlines()[-1]
    assert split_table({"before": before, "after": after}).splitlines()[-1].endswith("| 2.00x |")


def test_time_to_reward_level_and_ratio():
    from dashrl.bench.runs import time_to_level, ttr_summary, ttr_table

    assert time_to_level([1.0, 2.0, 3.0], [0.2, 0.6, 0.6], level=0.6, window=2) == (3.0, 3)
    assert time_to_level([1.0, 2.0, 3.0], [0.2, 0.6, 0.6], level=0.4, window=2) == (2.0, 2)
    rows = lambda dt, rs: [{"time/elapsed_s": dt * (i + 1), "reward/mean": r} for i, r in enumerate(rs)]  # noqa: E731
    dash = ttr_summary(rows(2.0, [0.0, 0.5, 1.0, 1.0]), level=0.75, window=2)
    trl = ttr_summary(rows(5.0, [0.0, 0.5, 1.0, 1.0]), level=0.75, window=2)
    never = ttr_summary(rows(5.0, [0.0, 0.0]), level=0.75, window=2)
    assert dash["ttr"] == (6.0, 3) and trl["ttr"] == (15.0, 3) and never["ttr"] is None
    md = ttr_table({"dashrl": dash, "trl": trl, "other": never}, 0.75, 2).splitlines()
    assert md[2].startswith("| dashrl | 4 | 2.00 |") and md[3].endswith("| 15.0 s (step 3) | 2.50x |")
    assert "not reached in 2 steps" in md[4]


def test_before_must_be_a_checkout(tmp_path):
    import pytest

    from dashrl.bench.runs import src_of

    with pytest.raises(ValueError, match="holds no src/dashrl"):
        src_of(str(tmp_path))
    assert (src_of(None) / "dashrl" / "bench" / "runs.py").is_file()
