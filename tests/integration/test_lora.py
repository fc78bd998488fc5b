"""LoRA (`--lora.r`) end to end on the tiny model: it learns, its checkpoint is peft's own,
it resumes bit for bit after SIGKILL, it runs every schedule and evaluation, and on Ray."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from conftest import make_tiny_model, make_tokenizer, tiny_config as config

from dashrl.data import Example
from dashrl.data.tasks import Task
from dashrl.train.loop import train
from dashrl.train.metrics import read_metrics

pytest.importorskip("peft")

LORA = {"r": 4}


def letter_task() -> Task:
    """Reward = share of completion characters that are 'a'."""

    def get(i: int) -> Example:
        return Example(id=str(i % 4), problem=f"Say a {i % 4}", answer="a")

    return Task(name="letters", get=get, size=None, reward=lambda ex, text: text.count("a") / max(len(text), 1))


def lm(scale: float = 1.0):
    """The tiny model, its tied embeddings scaled by `scale`: at the default init (std 0.02)
    its logits span about +-0.6, which no change of the decoder alone can widen much."""
    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(scale)
    return model, tok


def latest(res):
    return res.run_dir / "checkpoints" / (res.run_dir / "checkpoints" / "latest").read_text().strip()


def test_lora_learns_and_leaves_the_base_weights_alone(tmp_path):
    model, tok = lm(scale=5.0)
    base = copy.deepcopy(model)
    cfg = config(
        tmp_path,
        lora={"r": 8},
        algo={"prompts_per_step": 8, "group_size": 8},
        train={"steps": 25, "micro_batch_size": 64, "lr": 3e-2},
        sampler={"max_new_tokens": 4, "batch_size": 64},
    )
    res = train(cfg, model, tok, task=letter_task())
    rewards = [r["reward/mean"] for r in res.rows]
    assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.3, rewards
    policy = res.trainer.policy
    frozen = {k.replace(".base_layer.", "."): v for k, v in policy.model.state_dict().items() if "lora_" not in k}
    assert frozen.keys() == base.state_dict().keys()  # the base weights never moved
    assert all(torch.equal(frozen[k], v) for k, v in base.state_dict().items())
    adapters = policy.parameters()
    assert len(res.trainer.optimizer.state) == len(adapters)  # AdamW moments for the adapters only
    # r x (in + out) per linear layer of 2 decoder layers: q, k, v, o, gate, up, down (hidden 32, kv 16, mlp 64)
    assert sum(p.numel() for p in adapters) == 2 * 8 * (64 + 48 + 48 + 64 + 96 + 96 + 96)


def test_lora_checkpoint_is_peft_format_and_loads_with_plain_peft(tmp_path):
    from peft import PeftModel

    model, tok = lm()
    base = copy.deepcopy(model)
    res = train(
        config(tmp_path, lora=LORA, train={"steps": 2, "lr": 1e-2}, algo={"beta": 0.05}), model, tok, task=letter_task()
    )
    ckpt = latest(res)
    files = {p.name for p in ckpt.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "trainer_state.pt"} <= files
    assert "model.safetensors" not in files  # the base is not written again
    assert json.loads((ckpt / "adapter_config.json").read_text())["r"] == 4
    state = torch.load(ckpt / "trainer_state.pt", weights_only=True)
    n_adapters = len(res.trainer.policy.parameters())
    assert len(state["trainer"]["optimizer"]["state"]) == n_adapters
    ids = torch.tensor([[5, 9, 17, 33, 40, 41, 60], [70, 71, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        before = base(ids).logits
        want = res.trainer.policy.module.eval()(ids).logits
        got = PeftModel.from_pretrained(base, ckpt).eval()(ids).logits  # plain transformers + peft
    assert not torch.allclose(want, before, atol=1e-4)  # the adapters were trained
    assert torch.equal(got, want)
    assert any(r["kl"] > 0 for r in res.rows)  # the reference (adapters off) differs from the policy after step 1


@pytest.mark.parametrize("schedule", ["dash", "grpo", "ppo_multi", "ppo_mini"])
def test_lora_runs_every_schedule_with_evaluation(tmp_path, schedule):
    model, tok = lm()
    evaluation = {"every": 1, "datasets": "arithmetic", "limit": 2, "max_new_tokens": 4, "batch_size": 4}
    cfg = config(
        tmp_path,
        lora=LORA,
        algo={"schedule": schedule, "filter_threshold": -1.0},
        train={"steps": 2, "lr": 1e-2},
        eval=evaluation,
    )
    res = train(cfg, model, tok, task=letter_task())
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert all("eval/arithmetic/accuracy" in r for r in rows if r["step"] == rows[-1]["step"])
    moved = [k for k, v in res.trainer.policy.state_dict().items() if "lora_B" in k and v.abs().max() > 0]
    assert moved  # B starts at 0: any B that moved was trained


def test_lora_sft_schedule_trains_the_adapters(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"problem": f"Say a {i}", "completion": "aaa"}) + "\n" for i in range(6)))
    model, tok = lm()
    cfg = config(
        tmp_path,
        lora=LORA,
        algo={"schedule": "sft", "prompts_per_step": 2},
        sft={"data": str(data)},
        train={"steps": 2, "lr": 1e-2},
    )
    res = train(cfg, model, tok)
    assert [r["step"] for r in res.rows] == [1, 2] and all(r["loss"] > 0 for r in res.rows)
    assert any(v.abs().max() > 0 for k, v in res.trainer.policy.state_dict().items() if "lora_B" in k)


def assert_same_moved_adapters(ref, run, step: str) -> None:
    """Both runs' adapters at checkpoint `step` are bit-identical, and training moved them (lora_B starts at 0)."""
    a, b = load_file_adapters(ref / "checkpoints" / step), load_file_adapters(run / "checkpoints" / step)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)


def test_lora_sigkill_then_resume_is_bit_exact(tmp_path):
    from test_resume import run_plan

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "backprop:3"), (str(run), "step:4"), (str(run), None)]
    spec = {"schedule": "dash", "steps": 6, "save_every": 2, "lora": LORA, "algo": {"beta": 0.05}}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_moved_adapters(ref, run, "step-000006")
    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 7))
    for r, s in zip(ref_rows, rows):
        for key in ("reward/mean", "loss", "grad_norm", "kl", "lr"):
            assert r.get(key) == s.get(key), (r["step"], key)


def test_lora_with_an_environment_sigkill_then_resume_is_bit_exact(tmp_path):
    """LoRA on multi-turn rollouts (a text environment, its tokens masked): killed inside a turn's
    generate call and mid-backprop, the resumed run ends with the reference run's adapters and rows,
    and the adapters moved."""
    from test_resume import run_plan

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sample:1"), (str(run), "backprop:2"), (str(run), None)]
    spec = {"env": True, "max_new_tokens": 16, "steps": 3, "save_every": 1, "lora": LORA, "algo": {"beta": 0.05}}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_moved_adapters(ref, run, "step-000003")
    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert all(r["env/turns"] > 1.0 and r["gen/env_tokens"] > 0 for r in rows), rows
    for r, s in zip(ref_rows, rows, strict=True):
        for key in ("reward/mean", "loss", "grad_norm", "kl", "gen/env_tokens"):
            assert r.get(key) == s.get(key), (r["step"], key)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster for this module's Ray tests (started only when one runs)."""
    ray = pytest.importorskip("ray")
    import os
    import sys
    from pathlib import Path

    paths = [str(Path(__file__).resolve().parents[2] / "src")] + [
        p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in paths)}})  # fmt: skip
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the task and model class travel to the actors
    yield
    ray.shutdown()


RAY_RUN = {"lora": LORA, "algo": {"beta": 0.05}, "sampler": {"batch_size": 4}, "train": {"steps": 3, "lr": 1e-2}}


def _peft_keys(saved):
    """peft's file names (`...lora_A.weight`) as the policy's state names them (`...lora_A.default.weight`)."""
    return {
        k.replace("lora_A.weight", "lora_A.default.weight").replace("lora_B.weight", "lora_B.default.weight"): v
        for k, v in saved.items()
    }


def test_lora_on_one_sampler_one_trainer_is_the_single_process_run(tmp_path, ray_cluster):
    single_model, tok = lm()
    single = train(config(tmp_path, run={"name": "single"}, **RAY_RUN), single_model, tok, task=letter_task())
    dist_model, tok = lm()
    dist = train(
        config(tmp_path, run={"name": "d11"}, dist={"samplers": 1, "trainers": 1}, **RAY_RUN),
        dist_model,
        tok,
        task=letter_task(),
    )
    assert len(single.rows) == len(dist.rows) == 3
    for a, b in zip(single.rows, dist.rows):
        for k in ("reward/mean", "loss", "grad_norm", "kl", "filter/kept_frac"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (a["step"], k)
    assert dist.rows[-1]["time/scoring_s"] > 0  # scored on the sampler actor, and logged
    want, got = single.trainer.policy.state_dict(), _peft_keys(load_file_adapters(latest(dist)))
    assert want.keys() == got.keys()
    for k, v in got.items():
        assert torch.allclose(want[k], v, atol=3e-5, rtol=1e-4), k


class DyingLlama:
    """Mixin for the tiny Llama: a trainer process dies at its 3rd training forward pass (in step 2),
    once per marker file (the replacement actor, a new process, finds the marker)."""

    marker = ""
    training_forwards = 0

    @classmethod
    def _can_set_attn_implementation(cls):  # transformers cannot read this test-made class's source in an actor
        return True

    @property
    def base_model(self):
        if torch.is_grad_enabled():
            DyingLlama.training_forwards += 1
            if DyingLlama.training_forwards >= 3 and not os.path.exists(DyingLlama.marker):
                open(DyingLlama.marker, "w").write("died")
                os._exit(1)
        return super().base_model


def test_lora_dead_trainer_is_rebuilt_from_the_published_adapters(tmp_path, ray_cluster):
    """A LoRA trainer actor dies mid-backprop of step 2: the group restarts from step 1's
    published adapters and optimizer state, and the run ends bit for bit as the undisturbed one."""
    sections = {**RAY_RUN, "dist": {"samplers": 1, "trainers": 2}, "algo": {"beta": 0.05, "filter_threshold": -1.0}}
    ref_model, tok = lm()
    ref = train(config(tmp_path, run={"name": "ref"}, **sections), ref_model, tok, task=letter_task())
    model, tok = lm()
    DyingLlama.marker = str(tmp_path / "died")
    model.__class__ = type("DyingTinyLlama", (DyingLlama, type(model)), {})
    res = train(config(tmp_path, run={"name": "death"}, **sections), model, tok, task=letter_task())
    assert (tmp_path / "died").exists()
    assert [r["dist/trainer_restarts"] for r in res.rows] == [0, 1, 0]
    for a, b in zip(ref.rows, res.rows):
        assert all(a[k] == b[k] for k in ("reward/mean", "loss", "grad_norm", "kl")), a["step"]
    want, got = load_file_adapters(latest(ref)), load_file_adapters(latest(res))
    assert all(torch.equal(want[k], got[k]) for k in want)


def load_file_adapters(ckpt):
    from safetensors.torch import load_file

    return load_file(ckpt / "adapter_model.safetensors")


@pytest.mark.parametrize("save_merged", [False, True])
def test_lora_checkpoint_evaluates_stand_alone(tmp_path, model_dir, save_merged):
    """`dashrl eval --model.name CHECKPOINT` loads through `load_model`: the base that
    adapter_config.json names with the adapter merged, or (`lora.save_merged`) the merged
    model written into CHECKPOINT/merged."""
    from dashrl.models import load_model

    model, tok = load_model(model_dir)
    cfg = config(
        tmp_path, lora={**LORA, "save_merged": save_merged}, model={"name": model_dir}, train={"steps": 2, "lr": 5e-2}
    )
    res = train(cfg, model, tok, task=letter_task())
    ckpt = latest(res)
    assert (ckpt / "merged" / "model.safetensors").is_file() == save_merged
    assert not (ckpt / "model.safetensors").exists()  # beside adapter files, transformers would apply the adapter again
    merged, tok2 = load_model(str(ckpt / "merged" if save_merged else ckpt))
    assert type(merged).__name__ == "LlamaForCausalLM" and tok2.pad_token_id is not None
    ids = torch.tensor([[5, 9, 17, 33, 40, 41, 60]])
    with torch.no_grad():
        want = res.trainer.policy.module.eval()(ids).logits
        base = load_model(model_dir)[0](ids).logits
        got = merged(ids).logits
    assert not torch.allclose(want, base, atol=1e-4)
    assert torch.allclose(got, want, atol=1e-5)


def test_lora_with_gradient_checkpointing_gives_the_plain_gradient(tmp_path):
    """Frozen embeddings give the checkpointed blocks no input that requires grad unless the
    policy asks for one: without it the adapters would get no gradient at all."""
    norms = []
    for gc in (False, True):
        model, tok = lm()
        cfg = config(
            tmp_path / str(gc),
            lora=LORA,
            model={"gradient_checkpointing": gc},
            train={"steps": 1, "packed": False, "share_prompts": False},
        )
        norms.append(train(cfg, model, tok, task=letter_task()).rows[0]["grad_norm"])
    assert norms[0] > 0 and norms[1] == pytest.approx(norms[0], rel=1e-5)
