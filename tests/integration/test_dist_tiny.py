"""Distributed DASH on a small local Ray cluster with the tiny model (CPU, gloo).

One Ray cluster is shared by the module; each run starts and kills its own actors.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import make_tiny_model, make_tokenizer, tiny_config  # noqa: E402

from dashrl.data import Example  # noqa: E402
from dashrl.data.tasks import Task  # noqa: E402
from dashrl.train.loop import train  # noqa: E402
from dashrl.train.metrics import read_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # tasks defined here travel to the actors
    paths = [str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in paths)}},
    )
    yield
    ray.shutdown()


def letter_task() -> Task:
    """Reward = share of completion characters equal to 'a'."""

    def get(i: int) -> Example:
        return Example(id=str(i % 5), problem=f"Say a {i % 5}", answer="a")

    def reward(ex: Example, text: str) -> float:
        return text.count(ex.answer) / max(len(text), 1)

    return Task(name="letters", get=get, size=None, reward=reward)


def dying_task(marker: Path) -> Task:
    """`letter_task` whose scoring kills its process once (the first time, per marker file)."""
    base = letter_task()

    def reward(ex: Example, text: str) -> float:
        if ex.id == "3" and not marker.exists():
            marker.write_text("died")
            os._exit(1)  # the sampler actor dies mid-batch, after generating
        return base.reward(ex, text)

    return Task(name="letters", get=base.get, size=None, reward=reward)


def config(tmp_path, name, **sections):
    base = {"sampler": {"batch_size": 4}, "train": {"lr": 1e-2}, "run": {"name": name}}
    return tiny_config(tmp_path, base, **sections)


def run(cfg, task=None):
    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    res = train(cfg, model, tok, task=task or letter_task())
    return res, model


KEYS = ("reward/mean", "loss", "grad_norm", "filter/kept_frac", "gen/sampled_tokens")


def assert_same_rows(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        for k in KEYS:
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), (ra["step"], k, ra[k], rb[k])


def assert_same_weights(m1, m2):
    for (n, p), q in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-5, rtol=1e-4), n


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process reference run (3 steps)."""
    return run(config(tmp_path_factory.mktemp("single"), "single", train={"steps": 3}))


def test_one_sampler_one_trainer_matches_single_process(tmp_path, single):
    res, model = run(config(tmp_path, "d11", train={"steps": 3}, dist={"samplers": 1, "trainers": 1}))
    assert_same_rows(single[0].rows, res.rows)
    assert_same_weights(single[1], model)
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    for key in ("dist/sampler0/tokens_per_s", "dist/trainer0/queue_wait_s", "time/sync_s", "dist/sampler_restarts"):
        assert key in rows[0], key
    assert rows[0]["time/sync_s"] > 0


def test_two_samplers_two_trainers_same_run_every_group_once_whole(tmp_path):
    """H=2, H'=2 gives the single-process run (same samples, same summed gradient), and every
    prompt's group reaches exactly one trainer exactly once, whole (filter off: G samples)."""
    no_filter = {"filter_threshold": -1.0}
    ref, ref_model = run(config(tmp_path, "single-nf", algo=no_filter))
    res, model = run(config(tmp_path, "d22", algo=no_filter, dist={"samplers": 2, "trainers": 2}))
    assert_same_rows(ref.rows, res.rows)
    assert_same_weights(ref_model, model)
    for step in range(2):
        got = [d for d in res.trainer.deliveries if d.step == step]
        assert sorted(g for d in got for g in d.groups) == [0, 1, 2, 3]
        assert all(d.samples == 4 * len(d.groups) for d in got)
    assert {d.rank for d in res.trainer.deliveries} <= {0, 1}


def test_sampler_death_is_resampled_and_logged(tmp_path, single):
    marker = tmp_path / "died"
    cfg = config(tmp_path, "fault", train={"steps": 3}, dist={"samplers": 2, "trainers": 1})
    res, model = run(cfg, task=dying_task(marker))
    assert marker.exists()
    assert [r["dist/sampler_restarts"] for r in res.rows] == [1, 0, 0]
    assert_same_rows(single[0].rows, res.rows)  # the same seeds again: the same run


class DyingLlama:
    """Mixin for the tiny Llama: a trainer process dies at its 5th training forward pass."""

    training_forwards = 0

    def forward(self, *args, **kwargs):
        if torch.is_grad_enabled():
            DyingLlama.training_forwards += 1
            if DyingLlama.training_forwards >= 5:
                os._exit(1)
        return super().forward(*args, **kwargs)


@pytest.mark.slow
def test_trainer_death_stops_the_run_with_checkpoint(tmp_path):
    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    model.__class__ = type("DyingTinyLlama", (DyingLlama, type(model)), {})
    cfg = config(
        tmp_path, "tdeath", algo={"filter_threshold": -1.0}, train={"steps": 4}, run={"save_every": 1},
        dist={"samplers": 1, "trainers": 2},
    )
    with pytest.raises(SystemExit, match="trainer actor . died during step"):
        train(cfg, model, tok, task=letter_task())
    rows = read_metrics(tmp_path / "tdeath" / "metrics.jsonl")
    assert 1 <= len(rows) < 4
    latest = (tmp_path / "tdeath" / "checkpoints" / "latest").read_text().strip()
    from transformers import AutoModelForCausalLM

    assert latest == f"step-{len(rows):06d}"
    AutoModelForCausalLM.from_pretrained(tmp_path / "tdeath" / "checkpoints" / latest)
