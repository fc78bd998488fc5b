"""The FLOP count that backprop MFU rests on (dashrl.runtime.flops): a tiny Llama counted by hand,
the count checked against the packed pass as it is built (its positions, its LM-head rows, the
pairs its attention masks admit), the learner logging it, and both benches reading it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from markdown_table import read_table, shows

from dashrl.runtime.flops import Shape, pass_flops, shape_of
from dashrl.train.learner import Sample, collate
from dashrl.train.logprobs import attention_blocks, pack


def tiny_llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(num_hidden_layers=2, hidden_size=8, intermediate_size=16, num_attention_heads=2,
                       num_key_value_heads=2, vocab_size=11, tie_word_embeddings=False)  # fmt: skip


def test_a_tiny_llama_counted_by_hand():
    shape = shape_of(tiny_llama_config())
    # head dim 8 / 2 = 4. Per layer: q, k, v, o each 8 x (2 x 4) = 64 -> 256; gate, up, down each 8 x 16 = 128
    # -> 384; 640 per layer, 2 layers: 1280 body parameters. Head: 8 x 11 = 88. Attention width 2 x 4 = 8.
    assert shape == Shape(layers=2, body=1280, width=8, head=88)
    # One sequence: 3 prompt tokens, 2 completion tokens. The packed pass runs the prompt (3 positions)
    # and the completion but its last token (1 position): 4 positions through the body.
    body = 2 * 1280 * 4  # 2 FLOPs per multiply-add: 10240
    # The head at the 2 positions that predict a completion token (the prompt's last, the completion's first).
    head = 2 * 88 * 2  # 352
    # Attention pairs: the prompt causally over itself, 1 + 2 + 3 = 6; the completion's one position over
    # the 3 prompt tokens and itself, 4. 10 pairs, each Q.K (2 x 8) and P.V (2 x 8) per layer, 2 layers.
    attention = (2 * 8 + 2 * 8) * 2 * 10  # 640
    forward = body + head + attention  # 11232
    assert pass_flops(shape, [(3, [2])], backward=False) == forward
    assert pass_flops(shape, [(3, [2])]) == 3 * forward == 33696  # backward: 4 FLOPs per multiply-add


def test_the_body_is_the_decoder_layers_matmul_weights():
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config())
    linear = [m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("model.layers")]
    assert shape_of(model.config).body == sum(m.weight.numel() for m in linear)
    assert shape_of(model.config).head == model.lm_head.weight.numel()


def test_the_count_is_the_packed_pass_as_built():
    """Positions, head rows and attended pairs read off `pack` and `attention_blocks` themselves."""
    s = [Sample([1, 2], [5] * n, [-0.5] * n, 0.0, 1.0, 0, "stop") for n in (3, 1, 2)]
    s += [Sample([1, 2, 3, 4], [5] * n, [-0.5] * n, 0.0, 1.0, 1, "stop") for n in (2, 5, 0)]
    mb = collate(s, pad_id=0)
    assert mb.groups == [(2, [3, 1, 2]), (4, [2, 5, 0])]
    pk = pack(mb)
    positions, head_rows = pk.input_ids.shape[1], len(pk.rows)
    pairs = sum(
        b.length * (b.length + 1) // 2 if b.mask is None else int(b.mask.sum()) for b in attention_blocks(pk.pieces)
    )
    shape = Shape(layers=3, body=100, width=7, head=50)
    assert pass_flops(shape, mb.groups) == 3 * (2 * 100 * positions + 2 * 50 * head_rows + 4 * 7 * 3 * pairs)


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_the_learner_logs_the_count_of_its_passes(tmp_path, tiny_lm, beta):
    from conftest import tiny_config

    from dashrl.algo.advantages import full_norm
    from dashrl.train.loop import local_backend

    model, tok = tiny_lm
    cfg = tiny_config(tmp_path, train={"micro_batch_size": 16}, algo={"beta": beta})  # one pass: 4 prompts x 4
    source, learner = local_backend(cfg, model, tok, 1)
    samples = source.rollout(source.task.batch(0, 4), seed=0).samples
    samples = [replace(s, advantage=1.0) for s in samples]  # every sample carries gradient
    out = learner.backprop(samples, full_norm(samples, cfg.sampler.max_new_tokens))
    shape, groups = shape_of(model.config), collate(samples, 0).groups
    reference = pass_flops(shape, groups, backward=False) if beta else 0  # the KL term's reference forward
    assert out["train/flops"] == pass_flops(shape, groups) + reference


def test_the_quickstart_bench_reads_backprop_mfu_from_the_count():
    from dashrl.bench.runs import split, split_table

    def row(bp, flops=None):
        r = {"time/sampling_s": 1.0, "time/scoring_s": 0.0, "time/backprop_s": bp, "time/optimizer_s": 0.1,
             "time/step_s": 1.1 + bp, "gen/sampled_tokens": 100, "train/tokens": 500}  # fmt: skip
        return r if flops is None else {**r, "train/flops": flops}

    rows = [row(9.0, 1e9), row(4.0, 3e9), row(6.0, 7e9)]
    s = split(rows, n_params=100, peak_gflops=2.0)
    assert s["mfu_backprop"] == pytest.approx((3e9 + 7e9) / (4.0 + 6.0) / 2e9)  # steps 2..N: 50%
    cell = read_table(split_table({"after": {**s, "later_step": 5.0}}))["after"]["MFU backprop"]
    assert cell == "50.0%" and shows(cell, s["mfu_backprop"])
    assert math.isnan(split(rows[:2] + [row(6.0)], 100, 2.0)["mfu_backprop"])  # an arm that does not log it


def test_the_backprop_bench_reads_both_mfus_from_the_count():
    from types import SimpleNamespace as NS

    from dashrl.bench.backprop import backprop_table, batch_flops, lever_figures

    import torch

    samples = [NS(prompt_ids=[1, 2, 3], completion_ids=[5] * n, group=0) for n in (2, 4)]
    own, once = batch_flops(tiny_llama_config(), samples, kl=False)
    shape = shape_of(tiny_llama_config())
    assert own == pass_flops(shape, [(3, [2]), (3, [4])]) and once == pass_flops(shape, [(3, [2, 4])])
    assert once < own  # the prompt runs once
    with_kl = batch_flops(tiny_llama_config(), samples, kl=True)
    assert with_kl == (own * 4 / 3, once * 4 / 3)  # the reference model's forward: a third of the pass
    g = torch.ones(2)
    figures = {"padded": {**lever_figures(2.0, 1000, (own, once), 1e-5, g, g), "loss": 0.0}}
    cells = read_table(backprop_table(figures))["padded"]
    assert shows(cells["MFU (counted tokens)"], own / 2.0 / 1e4)
    assert shows(cells["MFU (prompt once per group)"], once / 2.0 / 1e4)
