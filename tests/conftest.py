"""Shared fixtures: a tiny random Llama and a character-level tokenizer, built offline."""

from __future__ import annotations

import string

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def make_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>"]
    chars = list(string.printable[:95]) + ["\n"]  # digits, letters, punctuation, space, newline
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


class AskOnce:
    """A text environment: after the model's first answer it asks once more, then the trajectory ends."""

    def reset(self, **row):
        self.asked = False

    def env_response(self, messages):
        if self.asked:
            return None
        self.asked = True
        return "Again."


def make_tiny_model(vocab_size: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(cfg).float().eval()


@pytest.fixture
def tiny_lm():
    """(model, tokenizer): a 2-layer random Llama over a 99-token character vocabulary."""
    tok = make_tokenizer()
    return make_tiny_model(len(tok)), tok


@pytest.fixture
def model_dir(tmp_path, tiny_lm):
    """The tiny model and tokenizer saved to a folder, as a user passes one to --model.name."""
    model, tok = tiny_lm
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def tiny_config(tmp_path, base=None, **sections):
    """A small run config for the tiny model: these defaults, then `base`, then `sections`, per section."""
    from dashrl.config import build_config

    merged = {
        "model": {"dtype": "fp32"},
        "sampler": {"max_new_tokens": 6, "batch_size": 16},
        "algo": {"prompts_per_step": 4, "group_size": 4},
        "train": {"steps": 2, "micro_batch_size": 4, "lr": 1e-3, "warmup_steps": 0},
        "run": {"out_dir": str(tmp_path), "name": "run", "quiet": True},
    }
    for layer in (base or {}, sections):
        for sec, vals in layer.items():
            merged.setdefault(sec, {}).update(vals)
    return build_config(merged)


def ray_session(*modules: str, num_cpus: int = 4):
    """A local Ray cluster for a test module's fixture (`yield from ray_session(__name__)`): the
    actors import dashrl and the test folders from this checkout, and the named test modules
    travel to them by value (tasks and classes defined in tests). Shut down afterwards."""
    import os
    import sys
    from pathlib import Path

    import ray
    import ray.cloudpickle

    for mod in modules:
        ray.cloudpickle.register_pickle_by_value(sys.modules[mod])
    root = Path(__file__).resolve().parents[1]
    paths = [str(root / "src"), str(root / "tests"), str(root / "tests" / "integration")]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(os.path.abspath(p) for p in paths)}},
    )
    yield
    ray.shutdown()
