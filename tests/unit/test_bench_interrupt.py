"""`dashrl bench` (the variant comparison) warms up once, untimed, and a Ctrl-C stops it with
the steps every variant finished written out, in one line and no traceback. The trainers, the
model and the machine measurements are fakes: nothing here trains or times anything."""

from __future__ import annotations

import json

import pytest

import dashrl.bench.steps as bench
from dashrl.cli import main


class FakeTrainer:
    made: list["FakeTrainer"] = []

    def __init__(self, cfg, model, tok, optimizer_steps):
        self.schedule, self.optimizer_steps = cfg.algo.schedule, optimizer_steps
        FakeTrainer.made.append(self)


class FakeModel:
    def parameters(self):
        return []


@pytest.fixture
def fake(monkeypatch):
    """Steps that return fixed rows; `stop_at` = (step, n-th call in it) raises KeyboardInterrupt."""
    state = {"calls": [], "stop_at": None}
    FakeTrainer.made = []

    def step_fn(source, learner, step):
        state["calls"].append((FakeTrainer.made.index(learner), step))
        if state["stop_at"] == (step, sum(1 for _, s in state["calls"] if s == step)):
            raise KeyboardInterrupt
        return [
            {
                "time/step_s": 2.0,
                "time/sampling_s": 1.0,
                "time/backprop_s": 1.0,
                "reward/mean": 0.5,
                "gen/sampled_tokens": 10,
                "train/tokens": 10,
            }
        ]

    import dashrl.models
    import dashrl.train.loop
    import dashrl.train.schedules

    monkeypatch.setattr(dashrl.train.loop, "local_backend", lambda *a: (None, FakeTrainer(*a)))
    monkeypatch.setattr(dashrl.train.schedules, "SCHEDULE_FNS", {k: step_fn for k in ("dash", "grpo")})
    monkeypatch.setattr(dashrl.models, "load_model", lambda name, attn=None, chat_template="": (FakeModel(), object()))
    monkeypatch.setattr(bench, "matmul_peak", lambda dtype: 100.0)
    monkeypatch.setattr(bench, "plot", lambda results, curves, path: False)
    return state


def bench_args(tmp_path, steps=3):
    return [
        "bench",
        "--quick",
        "--variants",
        "grpo,dash_nogf,dash",
        "--steps",
        str(steps),
        "--out",
        str(tmp_path / "b"),
    ]


def test_one_untimed_warm_up_step_runs_first_and_the_output_says_so(fake, tmp_path, capsys):
    assert main(bench_args(tmp_path, steps=2)) == 0
    warm = FakeTrainer.made[0]
    assert (warm.schedule, warm.optimizer_steps) == ("dash", 1)  # a throwaway trainer, not one of the variants
    assert fake["calls"][0] == (0, 0) and [c for c in fake["calls"] if c[0] == 0] == [(0, 0)]
    payload = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert {v: r["steps"] for v, r in payload["results"].items()} == {"grpo": 2, "dash_nogf": 2, "dash": 2}  # not 3
    assert "one untimed dash warm-up step ran first" in payload["workload"]
    assert "one untimed dash warm-up step ran first" in capsys.readouterr().out


def test_ctrl_c_keeps_the_steps_every_variant_finished(fake, tmp_path, capsys):
    fake["stop_at"] = (1, 2)  # step 2 (index 1): the first variant has run, the second is interrupted
    assert main(bench_args(tmp_path)) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    payload = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert {v: r["steps"] for v, r in payload["results"].items()} == {"grpo": 1, "dash_nogf": 1, "dash": 1}
    assert {v: len(rows) for v, rows in payload["rows"].items()} == {"grpo": 1, "dash_nogf": 1, "dash": 1}
    assert "Interrupted (Ctrl-C): 1 of 3 steps per variant measured." in (tmp_path / "b" / "bench.md").read_text()
    assert "interrupted in step 2: keeping the 1 step(s) that every variant finished" in captured.err


def test_ctrl_c_before_any_step_finished_writes_nothing(fake, tmp_path, capsys):
    fake["stop_at"] = (0, 3)  # the warm-up is call 1 of step 0; the second variant's first step is interrupted
    assert main(bench_args(tmp_path)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().endswith(
        "dashrl bench: interrupted before every variant finished a step; nothing measured, nothing written"
    )
    assert not (tmp_path / "b" / "bench.md").exists()


def test_ctrl_c_while_loading_is_one_line(fake, tmp_path, capsys, monkeypatch):
    import dashrl.models

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(dashrl.models, "load_model", interrupted)
    assert main(bench_args(tmp_path)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "dashrl bench: interrupted"
