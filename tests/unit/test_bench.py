"""Benchmark arithmetic: totals, rates and ratios from metrics rows (no timing asserted)."""

from dashrl.bench import summarize_variant, table


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

    from dashrl.bench import _workload, add_arguments
    from dashrl.config import load_config

    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = load_config(None, _workload(p.parse_args(["--workload", "wordproblems"])))
    assert (cfg.task.name, cfg.sampler.max_new_tokens, cfg.sampler.temperature) == ("wordproblems", 256, 0.5)
    assert load_config(None, _workload(p.parse_args(["--quick"]))).task.name == "arithmetic"
    assert load_config(None, _workload(p.parse_args([]))).task.name == "gsm8k"
