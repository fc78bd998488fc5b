"""The command line end to end on a tiny model saved to a folder: train, tune, bench."""

from __future__ import annotations

import json

import pytest

from dashrl.cli import main
from dashrl.config import load_config


SMALL = ["--sampler.max_new_tokens", "4", "--algo.prompts_per_step", "2", "--algo.group_size", "2",
         "--train.micro_batch_size", "2", "--model.dtype", "fp32"]  # fmt: skip


def test_train_command_on_a_local_model_folder(tmp_path, model_dir):
    rc = main(["train", "--model.name", model_dir, "--train.steps", "2", "--run.out_dir", str(tmp_path / "runs"),
               "--run.name", "r", "--run.quiet", "true", *SMALL])  # fmt: skip
    assert rc == 0
    rows = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def test_train_command_rejects_a_typo_before_loading(capsys):
    assert main(["train", "--train.stesp", "2"]) == 2
    assert "did you mean 'steps'" in capsys.readouterr().err


def test_tune_writes_a_config_with_measured_sizes(tmp_path, model_dir, capsys):
    out = tmp_path / "tuned.toml"
    rc = main(["tune", "--model.name", model_dir, "--batch-sizes", "2,4,4096", "--micro-batches", "2,4",
               "--out", str(out), *SMALL])  # fmt: skip
    assert rc == 0
    cfg = load_config(out)
    assert cfg.sampler.batch_size in (2, 4) and cfg.model.name == model_dir
    printed = capsys.readouterr()
    assert "joined passes (up to" in printed.err  # the packed pass's default was a candidate
    assert "[tune] inference batch 4096 left out: a step decodes at most" in printed.err
    assert "[tune] inference batch 4096:" not in printed.err  # never sampled: a step cannot fill it
    if "best joined passes" in printed.out:  # the defaults: micro-batches of G, joined from the model's shape
        assert (cfg.train.micro_batch_size, cfg.train.pass_tokens) == (2, 0)
    else:  # the measured micro-batch, each its own pass as measured
        assert f"best micro-batch {cfg.train.micro_batch_size} " in printed.out and cfg.train.pass_tokens == 1


def test_bench_quick_writes_table_and_json(tmp_path, model_dir):
    rc = main(["bench", "--quick", "--steps", "1", "--out", str(tmp_path / "b"), "--model.name", model_dir, *SMALL])
    assert rc == 0
    md = (tmp_path / "b" / "bench.md").read_text()
    for v in ("grpo", "dash_nogf", "dash", "trl"):  # trl: the test extra installs TRL
        assert f"| {v} |" in md
    assert "speed-up vs grpo | speed-up vs trl |" in md
    data = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert set(data["results"]) == {"grpo", "dash_nogf", "dash", "trl"}
    assert all(r["steps"] == 1 for r in data["results"].values())
    assert data["trl"]["generation_batch_size"] in (2, 4) and set(data["trl"]["probe"]) == {"2", "4"}


def test_bench_trl_bad_generation_batch_is_one_line(tmp_path, model_dir, capsys):
    rc = main(["bench", "--quick", "--steps", "1", "--variants", "trl", "--trl-gbs", "3", "--out", str(tmp_path / "b"),
               "--model.name", model_dir, *SMALL])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "TRL refused the workload" in err and "generation_batch_size (3)" in err and "Traceback" not in err


def test_bench_backprop_times_every_lever_on_one_batch(tmp_path, model_dir):
    """Every lever backprops the same batch; in fp32 each gradient equals the padded pass's
    (a lever that dropped a sample, a token or a mask term would move it by far more)."""
    rc = main(["bench", "--backprop", "--quick", "--repeats", "1", "--out", str(tmp_path / "b"),
               "--model.name", model_dir, *SMALL, "--sampler.max_new_tokens", "6"])  # fmt: skip
    assert rc == 0
    md = (tmp_path / "b" / "backprop.md").read_text()
    for v in ("padded", "head_chunk", "packed", "packed_chunk", "plain"):
        assert f"| {v} |" in md
    data = json.loads((tmp_path / "b" / "backprop.json").read_text())
    res = data["results"]
    assert res["padded"]["grad_rel"] == 0.0 and res["padded"]["grad_norm"] > 1e-3  # a gradient to compare
    for v in ("head_chunk", "packed", "packed_chunk", "plain"):
        assert res[v]["grad_rel"] < 1e-5, (v, res[v]["grad_rel"])
        assert abs(res[v]["loss"] - res["padded"]["loss"]) < 1e-6
        assert len(data["seconds"][v]) == 1 and res[v]["seconds"] > 0
    assert res["padded"]["mfu"] > 0
    # each lever ran its own pass (an ignored lever would be exact in fp32 too)
    assert res["padded"]["pass"] == "shared_prompt_logprobs, head_chunk 0"
    assert res["head_chunk"]["pass"] == "shared_prompt_logprobs, head_chunk 1024"
    assert res["packed"]["pass"] == "packed_logprobs, head_chunk 0"
    assert res["packed_chunk"]["pass"] == "packed_logprobs, head_chunk 1024"
    assert res["plain"]["pass"] == "completion_logprobs, head_chunk 0"


def test_bench_select_compares_the_four_arms_on_the_mixed_pool(tmp_path, model_dir):
    """`dashrl bench --select`: each arm's sampled tokens per trained group are the totals of its
    own rows, the table's ratios are read from them, and the GRESO arms do skip after the first epoch."""
    from markdown_table import read_table, shows

    rc = main(["bench", "--select", "--quick", "--steps", "4", "--out", str(tmp_path / "s"), "--model.name", model_dir,
               "--model.dtype", "fp32", "--sampler.max_new_tokens", "6", "--algo.group_size", "2"])  # fmt: skip
    assert rc == 0
    data = json.loads((tmp_path / "s" / "bench_select.json").read_text())
    table = read_table((tmp_path / "s" / "bench_select.md").read_text())
    assert list(table) == ["dash", "dapo_dynamic", "dapo_greso", "dash_greso"]
    per = {}
    for arm in table:
        rows = data["rows"][f"{arm}/seed0"]
        assert len(rows) == 4
        per[arm] = sum(r["gen/sampled_tokens"] for r in rows) / max(sum(r["bench/trained_groups"] for r in rows), 1)
        assert data["results"][arm][0]["tokens_per_group"] == per[arm]
    for arm in table:
        assert shows(table[arm]["vs dapo_dynamic"], per["dapo_dynamic"] / per[arm])
    assert data["results"]["dash"][0]["skipped_share"] == 0.0
    skipped = sum(r["select/skipped"] for arm in ("dapo_greso", "dash_greso") for r in data["rows"][f"{arm}/seed0"])
    assert skipped > 0  # the pool's trivial and impossible thirds give GRESO runs to skip


def test_bench_select_runs_the_named_arms_and_keeps_the_seeds_finished_before_a_stop(tmp_path, model_dir, monkeypatch):
    """`--variants` picks the arms; after every seed the table and raw rows are rewritten; a Ctrl-C in
    the third seed leaves it out, and the table gives the two finished seeds' median and range."""
    from markdown_table import read_table

    from dashrl.bench import select

    built = []

    def measured(step_fn, threshold):
        step = original(step_fn, threshold)
        seed = len(built) // 2
        built.append(seed)

        def stop_in_third_seed(i):
            if seed == 2 and i == 1:
                raise KeyboardInterrupt
            return step(i)

        return stop_in_third_seed

    original = select._measured
    monkeypatch.setattr(select, "_measured", measured)
    rc = main(["bench", "--select", "--quick", "--steps", "2", "--seeds", "3", "--variants", "dash_greso,dash",
               "--out", str(tmp_path / "s"), "--model.name", model_dir, "--model.dtype", "fp32",
               "--sampler.max_new_tokens", "6", "--algo.group_size", "2"])  # fmt: skip
    assert rc == 0 and built == [0, 0, 1, 1, 2, 2]
    data = json.loads((tmp_path / "s" / "bench_select.json").read_text())
    assert sorted(data["rows"]) == ["dash/seed0", "dash/seed1", "dash_greso/seed0", "dash_greso/seed1"]
    assert "2 seed(s)" in data["header"]
    table = read_table((tmp_path / "s" / "bench_select.md").read_text())
    assert list(table) == ["dash", "dash_greso"]
    per_seed = sorted(r["tokens_per_group"] for r in data["results"]["dash"])
    want = f"{(per_seed[0] + per_seed[1]) / 2:.0f} ({per_seed[0]:.0f}-{per_seed[1]:.0f})"
    assert table["dash"]["sampled tokens / trained group"] == want


@pytest.mark.slow
def test_ttr_trl_probe_times_real_trl_runs_on_the_tiny_model(tmp_path, model_dir):
    """Two per-device batch sizes, then TRL's two generation options at the faster, each a real 3-step
    TRL run in a process of its own (about a minute): every one runs on the CPU and is timed."""
    from dashrl.bench import runs, trlprobe

    flags = [*SMALL, "--model.name", model_dir, "--task.name", "arithmetic", "--reward.funcs", "integer",
             "--sampler.max_new_tokens", "4", "--train.steps", "9"]  # fmt: skip
    candidates = trlprobe.trl_batch_candidates(4, "2,4,8")  # 2 prompts x 2 samples per step
    options = trlprobe.trl_option_names("continuous_batching,static_cache")
    chosen, timed = trlprobe.probe_trl(candidates, options, lambda s: runs.trl_probe_seconds(flags, s, tmp_path))
    best = min((2, 4), key=lambda b: timed[str(b)])
    assert candidates == [2, 4] and list(timed) == ["2", "4", f"{best} + continuous_batching", f"{best} + static_cache"]
    assert all(s > 0 for s in timed.values()) and timed[chosen.label] == min(timed.values())
    for name in (
        "trl-batch-2",
        "trl-batch-4",
        f"trl-batch-{best}-continuous_batching",
        f"trl-batch-{best}-static_cache",
    ):
        rows = runs.read_rows(tmp_path / "probe" / name / "trl_metrics.jsonl")
        assert len(rows) == trlprobe.PROBE_STEPS
