"""`dashrl bench --sampling` and `--backprop` on Ctrl-C: the table of the repeats that every backend
(or lever) finished, marked as interrupted, exit status 130; nothing written when none finished.
A tiny random model; the machine measurements are fakes and nothing here asserts a time."""

from __future__ import annotations

import json

import pytest

import dashrl.bench.sampling as sampling
import dashrl.runtime.hardware
from dashrl.cli import main


@pytest.fixture
def quiet_machine(monkeypatch):
    monkeypatch.setattr(sampling, "matmul_peak", lambda dtype: 100.0)
    monkeypatch.setattr(sampling, "memory_bandwidth", lambda: 10.0)
    monkeypatch.setattr(dashrl.runtime.hardware, "matmul_peak", lambda dtype: 100.0)


def interrupt_call(monkeypatch, owner, name, n):
    """Make the n-th call (1-based) of `owner.name` raise KeyboardInterrupt; the others run."""
    original, calls = getattr(owner, name), [0]

    def wrapped(self, *a, **k):
        calls[0] += 1
        if calls[0] == n:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(owner, name, wrapped)
    return calls


def tiny_flags(model_dir):
    return ["--quick", "--model.name", model_dir, "--model.dtype", "fp32", "--sampler.max_new_tokens", "4",
            "--algo.group_size", "2", "--algo.prompts_per_step", "2", "--train.micro_batch_size", "2"]  # fmt: skip


def test_sampling_keeps_the_repeats_every_backend_finished(model_dir, tmp_path, capsys, quiet_machine, monkeypatch):
    from dashrl.rollout.hf import HFSampler

    # calls: 2 warm-ups (one per backend), repeat 1 = 2 calls, repeat 2 is interrupted at its second call
    interrupt_call(monkeypatch, HFSampler, "generate", 6)
    out = tmp_path / "b"
    args = ["bench", "--sampling", "--backends", "hf,hf_plain", "--batches", "2", "--repeats", "3", "--out", str(out)]
    assert main([*args, *tiny_flags(model_dir)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "keeping the 1 repeat(s) that every backend finished" in err
    text = (out / "sampling.md").read_text()
    assert "Interrupted (Ctrl-C): 1 of 3 repeats measured." in text and "1 interleaved calls per backend" in text
    results = json.loads((out / "sampling.json").read_text())["results"]
    assert {n: r["tokens"]["2"] for n, r in results.items()} == {"hf": 8, "hf_plain": 8}  # 2 sequences x 4 tokens, once


def test_sampling_interrupted_in_the_first_repeat_writes_nothing(
    model_dir, tmp_path, capsys, quiet_machine, monkeypatch
):
    from dashrl.rollout.hf import HFSampler

    interrupt_call(monkeypatch, HFSampler, "generate", 3)
    out = tmp_path / "b"
    args = ["bench", "--sampling", "--backends", "hf,hf_plain", "--batches", "2", "--repeats", "2", "--out", str(out)]
    assert main([*args, *tiny_flags(model_dir)]) == 130
    assert capsys.readouterr().err.strip().endswith("nothing measured, nothing written")
    assert not (out / "sampling.md").exists()


def test_backprop_keeps_the_repeats_every_lever_finished(model_dir, tmp_path, capsys, quiet_machine, monkeypatch):
    from dashrl.train.learner import Learner

    # 2 levers: the warm-up pass = 2 calls, repeat 1 = 2 calls, repeat 2 is interrupted at its first call
    interrupt_call(monkeypatch, Learner, "backprop", 5)
    out = tmp_path / "b"
    args = ["bench", "--backprop", "--levers", "padded,packed", "--repeats", "3", "--out", str(out)]
    assert main([*args, *tiny_flags(model_dir)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "keeping the 1 repeat(s) that every lever finished" in err
    assert "Interrupted (Ctrl-C): 1 of 3 repeats measured." in (out / "backprop.md").read_text()
    payload = json.loads((out / "backprop.json").read_text())
    assert {n: len(s) for n, s in payload["seconds"].items()} == {"padded": 1, "packed": 1}
