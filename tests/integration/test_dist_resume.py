"""Exact resume on the Ray path: SIGKILL the driver mid-sampling, mid-backprop and
mid-save, SIGTERM it once, resume each time; the run ends with the same weights, bit for
bit, as an uninterrupted Ray run (CPU, fp32).

The stages are run by `test_resume.py`'s script (one forked child per stage, which dies
with whatever it held); each child joins this module's Ray cluster as a new driver, so
a killed driver's actors go with it and the next stage starts fresh ones.
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from test_resume import assert_same_run, run_plan  # noqa: E402


@pytest.fixture(scope="module")
def address():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_ray_sigterm_saves_and_sigkill_mid_backprop_resumes_bit_exact(tmp_path, address):
    """The quick case (the full plan is slow): SIGTERM mid-sampling saves and exits 143
    (issue 10: it used to crash with -6 and no checkpoint), then a SIGKILL while the
    trainer actors backprop, then the resumed run finishes the same as the reference."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sigterm:0"), (str(run), "backprop:1"), (str(run), None)]
    spec = {"schedule": "dash", "steps": 2, "save_every": 0, "dist": {"samplers": 1, "trainers": 1, "address": address}}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, 143, -9, 0], [r["log"][-2000:] for r in results]
    assert "stopped after step 1 of 2; saved" in results[1]["log"]
    assert "SIGTERM received" not in results[1]["log"]
    assert_same_run(ref, run, 2)


def test_ray_overlap_run_resumes_bit_exact(tmp_path, address):
    """--dist.overlap 1: the checkpoint after step 1 holds step 2's batch, drawn ahead on the
    step-0 weights; the driver is SIGKILLed while the trainers backprop step 2, and the
    resumed run trains on that saved batch (not on one re-drawn with the step-1 weights), so
    it ends as the uninterrupted overlap run does, bit for bit."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [
        (str(ref), None),
        (str(run), "backprop:2"),
        (str(run), None),
    ]  # cycle 2 is counted from when it is drawn ahead
    spec = {"schedule": "dash", "steps": 3, "save_every": 1, "algo": {"loss": "ppo_clip"},
            "dist": {"samplers": 1, "trainers": 1, "address": address, "overlap": 1}}  # fmt: skip
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, 0], [r["log"][-2000:] for r in results]
    assert [r["dist/staleness_mean"] for r in read_metrics(ref / "metrics.jsonl")] == [0.0, 1.0, 1.0]
    assert_same_run(ref, run, 3)


def test_ray_env_run_resumes_bit_exact(tmp_path, address):
    """Multi-turn on a sampler actor (the environment loaded there by path, its rewards and counts
    sent to the driver), sampling one step ahead: SIGKILLed while the trainers backprop step 2, the
    resumed run (the checkpoint holding the batch drawn ahead, masks included) ends as the
    uninterrupted one, bit for bit."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "backprop:2"), (str(run), None)]
    spec = {"env": "path", "max_new_tokens": 16, "steps": 3, "save_every": 1, "algo": {"loss": "ppo_clip"},
            "dist": {"samplers": 1, "trainers": 1, "address": address, "overlap": 1}}  # fmt: skip
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 3)
    rows = read_metrics(run / "metrics.jsonl")
    assert all(r["env/turns"] > 1.0 and r["gen/env_tokens"] > 0 and "env/finish/stop" in r for r in rows), rows


def test_ray_greso_resumes_bit_exact(tmp_path, address):
    """GRESO's selector runs in the driver: its state is in the checkpoint, so a driver SIGKILLed
    mid-sampling resumes to skip what the uninterrupted Ray run skipped, and ends as it did."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sample:3"), (str(run), None)]
    spec = {"schedule": "dash", "steps": 4, "save_every": 1, "flat": True, "pool": True, "select": {"name": "greso"},
            "dist": {"samplers": 1, "trainers": 1, "address": address}}  # fmt: skip
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 4)
    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [r["select/skipped"] for r in rows] == [r["select/skipped"] for r in ref_rows]
    assert sum(r["select/skipped"] for r in rows) > 0


@pytest.mark.slow
def test_ray_driver_killed_anywhere_then_resumed_is_bit_exact(tmp_path, address):
    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [
        (str(ref), None),
        (str(run), "sample:1"),  # step 1 saved; dies with a unit on a sampler
        (str(run), "backprop:2"),  # resumes at 1, saves 2, dies while the trainers backprop
        (str(run), "save:2"),  # resumes at 2, dies half-way through saving step 3
        (str(run), "sigterm:3"),  # resumes at 2, saves 3; SIGTERM: finishes cycle 3, saves 4, exits 143
        (str(run), None),  # finds step 4 done
    ]
    spec = {"schedule": "dash", "steps": 4, "save_every": 1, "dist": {"samplers": 1, "trainers": 2, "address": address}}
    results = run_plan(tmp_path, spec, stages)
    codes = [r["code"] for r in results]
    assert codes == [0, -9, -9, -9, 143, 0], [r["log"][-2000:] for r in results]
    assert "resume with: dashrl train --resume" in results[4]["log"]
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert_same_run(ref, run, 4)
