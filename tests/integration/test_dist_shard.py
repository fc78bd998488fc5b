"""Sharded trainer actors (`--dist.shard full`, FSDP2 over gloo) with the tiny fp32 model.

Tolerance: the replicated trainers all-reduce two partial gradient sums and one process adds
them in one order; FSDP reduce-scatters the same two sums, and computes the grad norm from the
shards' norms: rounding, which Adam lifts to ~1e-5 after a few steps at lr 1e-2 (the bound of
`test_dist_tiny.assert_same_weights`). A lost or doubled micro-batch, a gradient averaged
instead of summed, or a clip over one shard only moves the weights by ~lr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import make_tiny_model, make_tokenizer  # noqa: E402
from test_dist_tiny import NO_FILTER, assert_same_rows, assert_same_weights, config, letter_task, run  # noqa: E402

from dashrl.train.loop import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHARD = {"samplers": 1, "trainers": 2, "shard": "full"}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    import ray.cloudpickle

    for mod in (__name__, "test_dist_tiny"):
        ray.cloudpickle.register_pickle_by_value(sys.modules[mod])  # tasks and test classes travel to the actors
    paths = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in paths)}},
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return run(config(tmp_path_factory.mktemp("shard"), "shard", train={"steps": 3}, algo=NO_FILTER, dist=SHARD))


def test_sharded_trainers_equal_replicated_trainers_and_one_process(tmp_path, sharded):
    """Losses, grad norms, rewards and final weights of 2 sharded trainers = 2 replicated = 1 process."""
    res, model = sharded
    one, one_model = run(config(tmp_path, "one", train={"steps": 3}, algo=NO_FILTER))
    rep, rep_model = run(config(tmp_path, "rep", train={"steps": 3}, algo=NO_FILTER, dist={"samplers": 1, "trainers": 2}))
    for ref, ref_model in ((one, one_model), (rep, rep_model)):
        assert_same_rows(ref.rows, res.rows)
        assert_same_weights(ref_model, model)
    assert all(r["grad_norm"] > 0 for r in res.rows)
    moved = max(float((p - q).abs().max()) for p, q in zip(make_tiny_model(len(make_tokenizer())).state_dict().values(), model.state_dict().values()))
    assert moved > 1e-3  # it trained
