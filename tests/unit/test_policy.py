"""The Policy layer: what trains, the KL reference, the sampler's weights, for full fine-tuning and LoRA."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_tiny_model, make_tokenizer

from dashrl.config import LoraConfig
from dashrl.policy import Policy, as_policy

pytest.importorskip("peft")

IDS = torch.tensor([[5, 9, 17, 33, 40, 41, 60], [70, 71, 3, 4, 5, 6, 7]])


def _logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


def _lora_policy(seed=0, **kw):
    tok = make_tokenizer()
    base = make_tiny_model(len(tok))
    ref = copy.deepcopy(base)
    return Policy(base, LoraConfig(r=4, **kw), seed=seed), ref


def _train_adapters(policy):
    """Move the adapters away from their start (B = 0 makes a fresh adapter a no-op)."""
    with torch.no_grad():
        for n, p in policy.module.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)


def test_full_fine_tuning_policy_is_the_model_itself():
    model = make_tiny_model(99)
    p = Policy(model, LoraConfig(r=0), reference=True)
    assert p.module is model and p.model is model and p.sampler_model() is model
    assert [id(x) for x in p.parameters()] == [id(x) for x in model.parameters()]
    with p.reference() as ref:
        assert ref is not model and torch.equal(_logits(ref), _logits(model))
    assert as_policy(model).model is model and as_policy(p) is p


def test_lora_trains_only_the_adapters_and_refers_to_the_base():
    p, base = _lora_policy()
    names = [n for n, q in p.module.named_parameters() if q.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    assert torch.equal(_logits(p.module), _logits(base))  # B = 0: a fresh adapter changes nothing
    _train_adapters(p)
    assert not torch.allclose(_logits(p.module), _logits(base), atol=1e-3)
    with p.reference() as ref:  # the base with adapters off: exactly the initial model, no copy
        assert ref is p.model and torch.equal(_logits(ref), _logits(base))
    assert not torch.allclose(_logits(p.module), _logits(base), atol=1e-3)  # switched back on


def test_lora_targets_pick_modules():
    tok = make_tokenizer()
    p = Policy(make_tiny_model(len(tok)), LoraConfig(r=2, targets="q_proj, v_proj"))
    assert {n.split(".")[-4] for n, q in p.module.named_parameters() if q.requires_grad} == {"q_proj", "v_proj"}


def test_lora_sampler_gets_the_merged_weights():
    p, _ = _lora_policy()
    _train_adapters(p)
    plain = p.sampler_model()
    assert type(plain).__name__ == "LlamaForCausalLM" and not any("lora_" in k for k in plain.state_dict())
    assert torch.allclose(_logits(plain), _logits(p.module), atol=1e-5)
    stale = copy.deepcopy(plain)
    _train_adapters(p)  # a new step: the sampler's copy is stale until it loads sampler_weights()
    assert not torch.allclose(_logits(stale), _logits(p.module), atol=1e-3)
    stale.load_state_dict(p.sampler_weights(), strict=True)
    assert torch.allclose(_logits(stale), _logits(p.module), atol=1e-5)


def test_lora_state_is_the_adapters_and_round_trips_through_for_sampler():
    p, _ = _lora_policy()
    _train_adapters(p)
    state = {k: v.clone() for k, v in p.state_dict().items()}
    assert state and all("lora_" in k for k in state)
    q, _ = _lora_policy()
    merged = q.for_sampler(state)  # a sampler actor: the published adapters in, merged weights out
    assert all(torch.equal(state[k], v) for k, v in q.state_dict().items())
    assert all(torch.equal(merged[k], v) for k, v in p.sampler_weights().items())
    with pytest.raises(ValueError, match="adapter weights do not match"):
        q.load_state_dict({"nonsense.lora_A.weight": torch.zeros(1)})


def test_lora_adapters_are_seeded():
    a, _ = _lora_policy(seed=3)
    b, _ = _lora_policy(seed=3)
    c, _ = _lora_policy(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if "lora_A" in k)


def test_lora_config_checks_its_fields():
    from dashrl.config import ConfigError, build_config

    assert build_config({"lora": {"r": 8}}).lora.target_modules == "all-linear"
    with pytest.raises(ConfigError, match="lora.r"):
        build_config({"lora": {"r": -1}})
    with pytest.raises(ConfigError, match="lora.dropout"):
        build_config({"lora": {"r": 8, "dropout": 1.5}})
    with pytest.raises(ConfigError, match="lora.targets"):
        build_config({"lora": {"r": 8, "targets": " , "}})
