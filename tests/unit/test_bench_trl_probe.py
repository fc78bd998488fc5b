"""`dashrl bench --ttr` probes TRL's per-device train batch before the time to reward (issue 36): each
candidate that keeps a step's samples per optimizer step is timed, the fastest runs TRL's side, and
the probe's table says which. The runs are faked here (a stand-in for `run_arm` that writes the
metrics a run would), so the choice and the flags each run gets are checked without TRL training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from markdown_table import read_table, shows

from dashrl.bench import runs, trlprobe
from dashrl.bench.trlprobe import TRLSetting

S_PER_STEP = {8: 4.0, 16: 2.5, 32: 2.0, 64: 3.0}  # a fake machine on which TRL is fastest at 32
OPTION_S_PER_STEP = {"use_transformers_continuous_batching=true": 2.2}  # static_cache fails on it


def test_the_fastest_candidate_is_chosen_ties_to_the_smaller():
    calls = []

    def timing(s):
        calls.append(s.label)
        return {8: 3.0, 16: 1.5, 32: 1.5, 64: 2.0}[s.batch]

    assert trlprobe.probe_trl([8, 16, 32, 64], [], timing) == (
        TRLSetting(16),
        {"8": 3.0, "16": 1.5, "32": 1.5, "64": 2.0},
    )
    assert calls == ["8", "16", "32", "64"]  # every candidate timed once
    assert trlprobe.probe_trl([32], [], timing) == (TRLSetting(32), {})  # nothing to choose: not timed
    assert calls == ["8", "16", "32", "64"]


def test_options_are_timed_at_the_fastest_batch_and_a_failed_one_is_never_chosen():
    times = {"8": 3.0, "16": 2.0, "16 + continuous_batching": 1.0, "16 + static_cache": float("nan")}
    chosen, timed = trlprobe.probe_trl([8, 16], ["static_cache", "continuous_batching"], lambda s: times[s.label])
    assert chosen == TRLSetting(16, "continuous_batching")
    assert list(timed) == ["8", "16", "16 + static_cache", "16 + continuous_batching"]
    chosen, _ = trlprobe.probe_trl([8], ["static_cache"], lambda s: {"8": 3.0}.get(s.label, float("nan")))
    assert chosen == TRLSetting(8)  # one batch and an option: both timed, the option failed
    with pytest.raises(ValueError, match="every probed TRL configuration failed"):
        trlprobe.probe_trl([8, 16], [], lambda s: float("nan"))
    with pytest.raises(ValueError, match="unknown option 'paged'; valid: continuous_batching, static_cache, none"):
        trlprobe.trl_option_names("paged")


def test_candidates_keep_a_steps_samples_per_optimizer_step():
    assert runs.trl_batch_candidates(64, "8,16,32,64") == [8, 16, 32, 64]
    assert runs.trl_batch_candidates(32, "8,16,32,64") == [8, 16, 32]
    with pytest.raises(ValueError, match="none divides a step's 24 samples"):
        runs.trl_batch_candidates(24, "16,32")
    with pytest.raises(ValueError, match="expected comma-separated integers"):
        runs.trl_batch_candidates(64, "8,x")


def _flag(flags, name):
    return flags[len(flags) - 1 - flags[::-1].index(name) + 1]  # the last value given: the one that wins


def _ttr(monkeypatch, run_arm, out, **args):
    """`ttr_run` with TRL installed, `run_arm` in place of the real runs, and the bench's flags
    (`steps` 5, level 0.6, window 2 unless `args` says otherwise)."""
    monkeypatch.setattr(runs, "run_arm", run_arm)
    monkeypatch.setattr("dashrl.peers.trl_grpo.trl_available", lambda: True)
    flags = {"steps": 5, "overrides": [], "out": str(out), "repeats": 1, "level": 0.6, "window": 2, **args}
    return runs.ttr_run(argparse.Namespace(**flags))


def test_ttr_runs_trl_with_the_fastest_probed_batch(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_run_arm(module, src, flags, run_dir, log_path, stop_when=None):
        seen.append((module, run_dir.name, list(flags)))
        run_dir.mkdir(parents=True)
        steps = int(_flag(flags, "--train.steps"))
        if module == ["dashrl.peers.trl_task"]:
            dt = S_PER_STEP[int(_flag(flags, "--train.micro_batch_size"))]
            if "--trl-option" in flags:
                option = _flag(flags, "--trl-option")
                if option.startswith("cache_implementation"):
                    raise runs.ArmFailed("dashrl.peers.trl_task for trl-batch-32-static_cache exited with 1")
                dt = OPTION_S_PER_STEP[option]
            first = 10.0  # TRL's first step: its first calls, left out of the probe's seconds
            rows = [{"time/elapsed_s": first + dt * i, "reward/mean": 0.2 * (i + 1)} for i in range(steps)]
            name = "trl_metrics.jsonl"
        else:
            rows = [{"time/elapsed_s": 1.0 * (i + 1), "reward/mean": 0.2 * (i + 1)} for i in range(steps)]
            name = "metrics.jsonl"
        (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return 0.0

    assert _ttr(monkeypatch, fake_run_arm, tmp_path, trl_batches="8,16,32,64",
                trl_options="continuous_batching,static_cache") == 0  # fmt: skip

    probes = [(name, flags) for module, name, flags in seen if name.startswith("trl-batch-")]
    assert [name for name, _ in probes] == [
        *(f"trl-batch-{b}" for b in (8, 16, 32, 64)),
        "trl-batch-32-continuous_batching",
        "trl-batch-32-static_cache",
    ]
    assert all(_flag(f, "--train.steps") == str(trlprobe.PROBE_STEPS) for _, f in probes)
    assert _flag(probes[4][1], "--train.micro_batch_size") == "32"  # the options at the fastest batch
    (trl,) = [flags for module, name, flags in seen if name == "trl-1"]
    (dash,) = [flags for module, name, flags in seen if name == "dashrl-1"]
    assert _flag(trl, "--train.micro_batch_size") == "32" and "--trl-option" not in trl  # the fastest probed
    assert _flag(dash, "--train.micro_batch_size") == "8"  # dashrl's own settings, untouched
    assert _flag(trl, "--train.steps") == _flag(dash, "--train.steps") == "5"

    md = (Path(tmp_path) / "ttr.md").read_text()
    assert "TRL per-device batch 32 x 2 accumulation steps (the fastest probed)" in md
    probe = read_table(md.split("TRL's configurations, probed:")[1])
    assert list(probe) == ["8", "16", "32", "64", "32 + continuous_batching", "32 + static_cache"]
    for b, cells in list(probe.items())[:4]:
        assert shows(cells["s / step"], S_PER_STEP[int(b)])  # steps 2..3: the first step left out
        assert cells["accumulation steps"] == str(64 // int(b))
    assert shows(probe["32 + continuous_batching"]["s / step"], 2.2)
    assert probe["32 + static_cache"]["s / step"] == "failed"
    assert [b for b, c in probe.items() if c[""] == "chosen"] == ["32"]
    saved = json.loads((Path(tmp_path) / "ttr.json").read_text())
    assert saved["trl_batch"] == 32 and saved["trl_option"] == ""
    assert {k: v for k, v in saved["trl_probe_s_per_step"].items() if "+" not in k} == {
        str(b): s for b, s in S_PER_STEP.items()
    }
    assert "| 32 | 2 | 2.00 | chosen |" in capsys.readouterr().out  # printed before the runs, too


def test_a_bad_candidate_list_is_one_line_before_anything_runs(tmp_path, monkeypatch, capsys):
    assert _ttr(monkeypatch, lambda *a: pytest.fail("nothing may run"), tmp_path / "o", trl_batches="24") == 2
    assert capsys.readouterr().err == "dashrl bench: --trl-batches 24: none divides a step's 64 samples\n"
    assert not (tmp_path / "o").exists()


def test_a_run_that_dies_is_one_message_naming_it_and_its_log(tmp_path, monkeypatch, capsys):
    """A side's process killed (SIGKILL, as the kernel's OOM killer does) or failing ends the bench with
    a message naming the run, the exit status and the log, not a traceback."""
    from dashrl.cli import main

    (tmp_path / "dies.py").write_text("import os, signal\nprint('loading')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    with pytest.raises(
        runs.ArmFailed, match=r"dies for trl-1 exited with -9 \(killed: SIGKILL, out of memory\?\)"
    ) as e:
        runs.run_arm(["dies"], tmp_path, [], tmp_path / "runs" / "trl-1", tmp_path / "trl-1.log")
    assert str(e.value).endswith(f"its log {tmp_path / 'trl-1.log'} ends:\nloading\n")

    def dead(*a, **k):
        raise runs.ArmFailed("dashrl.peers.trl_task for trl-1 exited with -9 (killed: SIGKILL, out of memory?)")

    monkeypatch.setattr(runs, "run_arm", dead)
    monkeypatch.setattr(runs, "probe_trl", lambda b, o, f: (TRLSetting(8), {}))
    assert main(["bench", "--ttr", "--steps", "1", "--trl-batches", "8", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dashrl bench: dashrl.peers.trl_task for trl-1 exited with -9") and "Traceback" not in err


def test_a_run_is_stopped_once_its_level_is_reached_and_that_is_no_failure(tmp_path, monkeypatch):
    """`--ttr` ends each run once its rolling reward reaches the level (`--steps` is the cap): run_arm
    sends SIGTERM when `stop_when` says so, and the run's SIGTERM exit is not a failed arm."""
    (tmp_path / "climbs.py").write_text(
        "import json, sys, time\n"
        "out = sys.argv[sys.argv.index('--run.out_dir') + 1] + '/' + sys.argv[sys.argv.index('--run.name') + 1]\n"
        "import os; os.makedirs(out, exist_ok=True)\n"
        "with open(out + '/metrics.jsonl', 'w') as f:\n"
        "    for i in range(10000):\n"
        "        f.write(json.dumps({'time/elapsed_s': i + 1.0, 'reward/mean': min(1.0, i / 10)}) + '\\n')\n"
        "        f.flush(); time.sleep(0.05)\n"
    )
    metrics = tmp_path / "runs" / "dashrl-1" / "metrics.jsonl"
    reached = lambda: runs.reached_level(metrics, 0.6, 3)  # noqa: E731
    runs.run_arm(["climbs"], tmp_path, [], metrics.parent, tmp_path / "dashrl-1.log", stop_when=reached)
    rows = runs.read_rows(metrics)
    assert runs.ttr_summary(rows, 0.6, 3)["ttr"] == (8.0, 8)  # rewards 0.5, 0.6, 0.7 at steps 6-8
    assert len(rows) < 10000  # stopped, not run to its end (10000 rows take 500 s)


def test_repeats_0_runs_the_probe_alone_and_keeps_its_table(tmp_path, monkeypatch):
    seen = []

    def fake_run_arm(module, src, flags, run_dir, log_path, stop_when=None):
        seen.append(run_dir.name)
        run_dir.mkdir(parents=True)
        dt = S_PER_STEP[int(_flag(flags, "--train.micro_batch_size"))] + 0.5 * ("--trl-option" in flags)
        rows = [{"time/elapsed_s": 10.0 + dt * i, "reward/mean": 0.1} for i in range(trlprobe.PROBE_STEPS)]
        (run_dir / "trl_metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return 0.0

    assert _ttr(monkeypatch, fake_run_arm, tmp_path, repeats=0, trl_batches="8", trl_options="static_cache") == 0
    assert seen == ["trl-batch-8", "trl-batch-8-static_cache"]  # one batch and an option: both timed, nothing else
    md = (tmp_path / "ttr.md").read_text()
    assert "(--repeats 0: the probe alone)" in md
    probe = read_table(md.split("TRL's configurations, probed:")[1])
    assert shows(probe["8"]["s / step"], 4.0) and shows(probe["8 + static_cache"]["s / step"], 4.5)
    assert probe["8"][""] == "chosen"
    assert json.loads((tmp_path / "ttr.json").read_text())["repeats"] == {"dashrl": [], "trl": []}


def test_ttr_gives_dashrl_the_settings_of_a_tuned_config_and_trl_none_of_them(tmp_path, monkeypatch):
    """`--ttr --tuned FILE`: dashrl's runs get the inference batch, micro-batch and pass setting that
    `dashrl tune` wrote; TRL's probe and runs keep the shared flags; the header and ttr.json say so."""
    from dashrl.config import load_config
    from dashrl.config.loading import to_toml

    tuned = tmp_path / "tuned.toml"
    cfg = load_config(
        None, ["--sampler.batch_size", "32", "--train.micro_batch_size", "16", "--train.pass_tokens", "1"]
    )
    tuned.write_text(to_toml(cfg))
    seen = {}

    def fake_run_arm(module, src, flags, run_dir, log_path, stop_when=None):
        seen[run_dir.name] = list(flags)
        run_dir.mkdir(parents=True)
        name = "metrics.jsonl" if module == ["dashrl", "train"] else "trl_metrics.jsonl"
        rows = [{"time/elapsed_s": 1.0 * (i + 1), "reward/mean": 0.7} for i in range(3)]
        (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return 0.0

    assert _ttr(monkeypatch, fake_run_arm, tmp_path / "o", trl_batches="8", trl_options="none", tuned=str(tuned)) == 0
    assert sorted(seen) == ["dashrl-1", "trl-1"]  # one batch, no option: nothing probed
    dash, trl = seen["dashrl-1"], seen["trl-1"]
    assert [_flag(dash, f) for f in ("--sampler.batch_size", "--train.micro_batch_size", "--train.pass_tokens")] == [
        "32", "16", "1"]  # fmt: skip
    assert _flag(trl, "--sampler.batch_size") == "64" and _flag(trl, "--train.micro_batch_size") == "8"
    assert "--train.pass_tokens" not in trl
    raw = json.loads((tmp_path / "o" / "ttr.json").read_text())
    assert raw["dashrl_flags"] == dash and raw["flags"] == trl[: len(raw["flags"])]
    assert f"dashrl with the settings `dashrl tune` wrote to {tuned}: sampler.batch_size 32, " in raw["workload"]


def test_ttr_with_a_tuned_file_that_is_not_there_is_one_line(tmp_path, monkeypatch, capsys):
    assert _ttr(monkeypatch, lambda *a, **k: pytest.fail("nothing may run"), tmp_path / "o", trl_batches="8",
                trl_options="none", tuned=str(tmp_path / "nope.toml")) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith("dashrl bench: ") and "nope.toml" in err and err.count("\n") == 1
