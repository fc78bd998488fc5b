"""Sharded trainer actors (`--dist.shard full`, FSDP2 over gloo) with the tiny fp32 model.

Tolerance: the replicated trainers all-reduce two partial gradient sums and one process adds
them in one order; FSDP reduce-scatters the same two sums, and computes the grad norm from the
shards' norms: rounding, which Adam lifts to ~1e-5 after a few steps at lr 1e-2 (the bound of
`test_dist_tiny.assert_same_weights`). A lost or doubled micro-batch, a gradient averaged
instead of summed, or a clip over one shard only moves the weights by ~lr.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from conftest import make_tiny_model, make_tokenizer, ray_session  # noqa: E402
from test_dist_tiny import NO_FILTER, assert_same_rows, assert_same_weights, config, letter_task, run  # noqa: E402

from dashrl.train.loop import train  # noqa: E402

SHARD = {"samplers": 1, "trainers": 2, "shard": "full"}


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    yield from ray_session(__name__, "test_dist_tiny")


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    return run(config(tmp_path_factory.mktemp("shard"), "shard", train={"steps": 3}, algo=NO_FILTER, dist=SHARD))


def test_sharded_trainers_equal_replicated_trainers_and_one_process(tmp_path, sharded):
    """Losses, grad norms, rewards and final weights of 2 sharded trainers = 2 replicated = 1 process."""
    res, model = sharded
    one, one_model = run(config(tmp_path, "one", train={"steps": 3}, algo=NO_FILTER))
    rep, rep_model = run(
        config(tmp_path, "rep", train={"steps": 3}, algo=NO_FILTER, dist={"samplers": 1, "trainers": 2})
    )
    for ref, ref_model in ((one, one_model), (rep, rep_model)):
        assert_same_rows(ref.rows, res.rows)
        assert_same_weights(ref_model, model)
    assert all(r["grad_norm"] > 0 for r in res.rows)
    moved = max(
        float((p - q).abs().max())
        for p, q in zip(make_tiny_model(len(make_tokenizer())).state_dict().values(), model.state_dict().values())
    )
    assert moved > 1e-3  # it trained


class DyingShardedLlama:
    """Mixin for the tiny Llama: a sharded trainer process dies at its 3rd training forward pass
    (step 2: each rank runs its two deliveries of a step as two passes of the model's own forward),
    once per marker file (the replacement actors find the marker)."""

    marker = ""
    training_forwards = 0

    @classmethod
    def _can_set_attn_implementation(cls):
        return True  # as test_dist_tiny.DyingLlama: keeps the packed pass of the undisturbed run

    def forward(self, *args, **kwargs):  # a sharded trainer runs the model's own forward
        if torch.is_grad_enabled():
            DyingShardedLlama.training_forwards += 1
            if DyingShardedLlama.training_forwards >= 2 and not Path(DyingShardedLlama.marker).exists():
                Path(DyingShardedLlama.marker).write_text("died")
                os._exit(1)
        return super().forward(*args, **kwargs)


def test_dead_sharded_trainer_is_replaced_and_the_run_is_unchanged(tmp_path, sharded):
    """A sharded trainer dies mid-backprop of step 2: the group is rebuilt from step 1's whole
    state (each new rank keeps its shard), the step runs again, and the run ends bit for bit
    as the undisturbed sharded run."""
    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    DyingShardedLlama.marker = str(tmp_path / "died")
    model.__class__ = type("DyingShardedTinyLlama", (DyingShardedLlama, type(model)), {})
    cfg = config(tmp_path, "tdeath", train={"steps": 3}, algo=NO_FILTER, dist=SHARD)
    res = train(cfg, model, tok, task=letter_task())
    assert (tmp_path / "died").exists()
    assert [r["dist/trainer_restarts"] for r in res.rows] == [0, 1, 0]
    ref, ref_model = sharded
    assert_same_rows(ref.rows, res.rows)
    for (n, p), q in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(p, q), n


@pytest.mark.slow
def test_sharded_run_resumes_bit_exact_after_sigkill_and_saves_a_plain_model(tmp_path):
    """The driver is SIGKILLed while the sharded trainers backprop step 2; the resumed run ends
    with the uninterrupted run's weights, bit for bit. The checkpoint is one whole model that
    plain transformers loads (the trainers' shards gathered once)."""
    from test_resume import assert_same_run, final_weights, run_plan
    from transformers import AutoModelForCausalLM

    from dashrl.train.checkpoint import latest_checkpoint

    address = ray.get_runtime_context().gcs_address
    ref, run_dir = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run_dir), "backprop:1"), (str(run_dir), None)]
    spec = {"schedule": "dash", "steps": 2, "save_every": 1, "dist": {**SHARD, "address": address}}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run_dir, 2)
    loaded = AutoModelForCausalLM.from_pretrained(latest_checkpoint(run_dir))
    for k, v in final_weights(run_dir).items():
        assert torch.equal(loaded.state_dict()[k], v), k


@pytest.mark.parametrize("schedule", ["grpo", pytest.param("ppo_mini", marks=pytest.mark.slow)])
def test_sharded_schedules_equal_one_process(tmp_path, schedule):
    """grpo: a backprop call per micro-batch and a KL term against a sharded reference copy;
    ppo_mini: several optimizer steps per sampling cycle. Each is the one-process run."""
    algo = {"schedule": schedule, **({"ppo_k": 2} if schedule == "ppo_mini" else {})}
    ref, ref_model = run(config(tmp_path, f"{schedule}-one", algo=algo))
    res, model = run(config(tmp_path, f"{schedule}-shard", algo=algo, dist=SHARD))
    assert_same_rows(ref.rows, res.rows)
    assert_same_weights(ref_model, model)
    if schedule == "grpo":
        assert all(r["kl"] != 0 for r in res.rows[1:])


class NanOnRankOne:
    """Mixin: on trainer rank 1 only, the decoder's output is NaN in its first training pass (its
    deliveries of step 1, joined into one pass); rank 0 sees finite losses."""

    training_forwards = 0

    @classmethod
    def _can_set_attn_implementation(cls):
        return True

    def forward(self, *args, **kwargs):
        import torch.distributed as dist

        poison = torch.is_grad_enabled() and dist.is_initialized() and dist.get_rank() == 1
        if poison:
            NanOnRankOne.training_forwards += 1
            poison = NanOnRankOne.training_forwards <= 1
        if not poison:
            return super().forward(*args, **kwargs)

        def nan(module, args, out):
            out.last_hidden_state = out.last_hidden_state * float("nan")
            return out

        hook = self.model.register_forward_hook(nan, prepend=True)  # before the hook that reads the output
        try:
            return super().forward(*args, **kwargs)
        finally:
            hook.remove()


@pytest.mark.slow
def test_nonfinite_loss_on_one_sharded_rank_skips_the_step_on_every_rank(tmp_path):
    """Rank 1's loss is NaN in step 1: both ranks still run their passes (no rank waits on a
    collective the other skipped), both skip the step and drop the NaN gradients, and step 2 trains."""
    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.__class__ = type("NanTinyLlama", (NanOnRankOne, type(model)), {})
    res = train(config(tmp_path, "nan", algo=NO_FILTER, dist=SHARD), model, tok, task=letter_task())
    assert [r.get("skipped") for r in res.rows] == ["nonfinite_loss", None]
    assert res.rows[1]["grad_norm"] > 0
    after = model.state_dict()
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], v) for k, v in after.items())
