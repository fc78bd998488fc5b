"""`dashrl study` on the tiny model: a killed study continues where it died (finished arms
skipped untouched, the interrupted arm resumed from its checkpoint to the same weights as an
uninterrupted run), and `--quick` runs every arm end to end into a report with every table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dashrl.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--model.dtype", "fp32", "--eval.limit", "4", "--eval.max_new_tokens", "8", "--sampler.max_new_tokens", "8"]

# The child runs the study and SIGKILLs itself right after dash_nokl-s0 saved step 2 of 3
# (the wrapper is installed here, in the child; the library has no test hooks).
KILLER = """
import os, signal, sys
import dashrl.train.loop as loop
real = loop._save
def save(cfg, run_dir, parts, rows, step, *a, **k):
    path = real(cfg, run_dir, parts, rows, step, *a, **k)
    if run_dir.name == "dash_nokl-s0" and step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
loop._save = save
from dashrl.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _weights(run_dir: Path) -> bytes:
    latest = sorted((run_dir / "checkpoints").glob("step-*"))[-1]
    return (latest / "model.safetensors").read_bytes()


def test_study_skips_finished_arms_and_resumes_a_killed_one(tmp_path, model_dir, capsys):
    out = tmp_path / "study"
    argv = ["study", "--quick", "--out", str(out), "--model.name", model_dir, *SMALL, "--run.save_every", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", KILLER, *argv, "--arms", "base,dash,dash_nokl"], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]  # died by SIGKILL
    runs = out / "runs"
    assert (runs / "dash-s0" / "summary.md").is_file()  # finished before the kill
    killed = runs / "dash_nokl-s0"
    assert not (killed / "summary.md").exists() and (killed / "checkpoints" / "step-000002").is_dir()
    rows_before = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows_before] == [1, 2]
    dash_files = _files(runs / "dash-s0")

    assert main([*argv, "--arms", "base,dash,dash_nokl"]) == 0
    err = capsys.readouterr().err
    assert "dash-s0: finished, skipped" in err and "dash_nokl-s0: resuming" in err
    assert _files(runs / "dash-s0") == dash_files  # skipped: not a file touched
    rows_after = (killed / "metrics.jsonl").read_text().splitlines()
    assert rows_after[:2] == rows_before and [json.loads(r)["step"] for r in rows_after] == [1, 2, 3]
    report = (out / "report.md").read_text()
    assert report.count("### Finding") == 5 and "not among --arms" in report

    # the resumed arm ends with the weights of an arm that was never killed
    ref = tmp_path / "ref"
    assert (
        main(
            [
                "study",
                "--quick",
                "--out",
                str(ref),
                "--model.name",
                model_dir,
                *SMALL,
                "--run.save_every",
                "1",
                "--arms",
                "dash_nokl",
            ]
        )
        == 0
    )
    assert _weights(killed) == _weights(ref / "runs" / "dash_nokl-s0")
    capsys.readouterr()

    # a third run trains nothing and evaluates nothing: everything is cached
    assert main([*argv, "--arms", "base,dash,dash_nokl"]) == 0
    err = capsys.readouterr().err
    assert "training" not in err and "resuming" not in err and "evaluating" not in err


@pytest.mark.slow
def test_quick_study_runs_every_arm_into_a_report_with_every_table(tmp_path, model_dir, capsys):
    out = tmp_path / "study"
    assert main(["study", "--quick", "--out", str(out), "--model.name", model_dir, *SMALL]) == 0
    report = (out / "report.md").read_text()
    for n in range(1, 6):
        assert f"### Finding {n}:" in report
    for arm in ("base", "dash", "dash_nokl", "nogf", "grpo", "ppo_multi", "ppo_mini", "sft_h", "sft_m"):
        assert f"| `{arm}` |" in report
    assert "PPO-Multi at DASH's time" in report and "PPO-Mini at DASH's time" in report
    for png in ("reward_time.png", "abs_adv.png", "gen_length_kl.png", "pass_at_k.png"):
        assert (out / png).stat().st_size > 1000
    # the PPO arms keep only the checkpoint read at DASH's time and the final one
    for arm in ("ppo_multi", "ppo_mini"):
        assert 1 <= len(list((out / "runs" / f"{arm}-s0" / "checkpoints").glob("step-*"))) <= 2


def test_registry_algorithms_are_opt_in_arms(tmp_path, model_dir, capsys):
    """`--arms base,dapo,gspo`: the registry's other algorithms run as study arms and join the
    report; a study that does not name them neither runs nor lists them."""
    out = tmp_path / "study"
    assert (
        main(["study", "--quick", "--out", str(out), "--model.name", model_dir, *SMALL, "--arms", "base,dapo,gspo"])
        == 0
    )
    report = (out / "report.md").read_text()
    assert "| `dapo` |" in report and "| `gspo` |" in report and "| `rloo` |" not in report
    rows = [json.loads(line) for line in (out / "runs" / "dapo-s0" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("dynamic/rounds" in r for r in rows)
