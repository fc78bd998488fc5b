"""The repeatability promise's kernel side (dashrl.runtime.kernels, docs/repeatability.md).

- `restore` sets the recorded thread count and names, in one line, what it could not restore;
- with `train.cpu_isa = avx512_core_bf16` a bf16 forward and backward of a model of the default
  model's shapes gives the same bits at 1 and 2 threads, on every CPU; on a CPU with AMX tiles
  the same pass without the cap differs between 1 and 2 threads (so the check can fail) and
  runs AMX kernels, which the cap removes (read from oneDNN's own log of what ran).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dashrl.runtime import kernels
from dashrl.config import ConfigError, load_config

# A 2-layer model of SmolLM2-135M's widths (random weights: no download), bf16 autocast as in
# training; prints a digest of the logits and of every gradient at 1 and at 2 threads.
PROBE = r"""
import hashlib, sys
from dashrl.runtime.kernels import apply_cpu_isa
apply_cpu_isa(sys.argv[1])
import torch
from transformers import LlamaConfig, LlamaForCausalLM
cfg = LlamaConfig(vocab_size=4096, hidden_size=576, intermediate_size=1536, num_hidden_layers=2,
                  num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=512)
torch.manual_seed(0)
model = LlamaForCausalLM(cfg)
ids = torch.randint(0, 4096, (3, 100))  # 300 rows: oneDNN's AMX kernels split them by thread count
for threads in (1, 2):
    torch.set_num_threads(threads)
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids).logits
    torch.nn.functional.cross_entropy(logits[:, :-1].float().flatten(0, 1), ids[:, 1:].flatten()).backward()
    h = hashlib.sha256(logits.detach().float().numpy().tobytes())
    for p in model.parameters():
        h.update(p.grad.float().numpy().tobytes())
    print("DIGEST", threads, h.hexdigest(), flush=True)
"""


def _probe(cap: str) -> tuple[list[str], list[str]]:
    """(digests at 1 and 2 threads, the oneDNN matmul kernels that ran) under ISA cap `cap`."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "OMP_NUM_THREADS")
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, cap],
        env={**env, "ONEDNN_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    digests = [line.split()[2] for line in lines if line.startswith("DIGEST")]
    ran = [line.split(",")[6] for line in lines if ",exec,cpu,matmul," in line]
    assert len(digests) == 2 and ran, out.stdout[-2000:]  # no oneDNN matmul: the probe exercises nothing
    return digests, ran


def _amx_cpu() -> bool:
    return kernels.thread_dependent(kernels.effective_isa(kernels._cpuinfo()[1], ""))  # whatever this process's cap


@pytest.mark.skipif(kernels.available_cores() < 2, reason="needs 2 cores")
@pytest.mark.skipif(
    not kernels.native_bf16(gpu=False), reason="a CPU without bf16 instructions runs no oneDNN bf16 matmul to cap"
)
def test_capped_isa_gives_the_same_bits_at_1_and_2_threads_and_runs_no_amx_kernel():
    digests, ran = _probe("avx512_core_bf16")
    assert digests[0] == digests[1]
    assert not [impl for impl in ran if "amx" in impl], ran
    if _amx_cpu():  # without the cap this CPU runs AMX kernels and the check fails: what the cap is for
        digests, ran = _probe("")
        assert any("amx" in impl for impl in ran), ran
        assert digests[0] != digests[1]


def test_restore_sets_the_recorded_threads_and_is_silent_when_all_matches():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rec = {**kernels.record(), "threads": min(2, kernels.available_cores())}
        assert kernels.restore(rec) is None
        assert torch.get_num_threads() == rec["threads"]
    finally:
        torch.set_num_threads(before)


def test_restore_names_what_it_cannot_restore_in_one_line(monkeypatch):
    before = torch.get_num_threads()
    try:
        rec = {**kernels.record(), "threads": kernels.available_cores() + 3, "isa": "avx512_core_amx"}
        monkeypatch.setattr(kernels, "effective_isa", lambda flags, cap: "avx512_core_amx")
        msg = kernels.restore(rec)
        assert torch.get_num_threads() == kernels.available_cores()
        assert msg == (
            f"only {kernels.available_cores()} cores here; resuming with threads {kernels.available_cores()} "
            f"(was {kernels.available_cores() + 3}): the resumed steps will not repeat the "
            "uninterrupted run bit for bit"
        )
        # another CPU: named whatever the ISA; a thread count only matters where AMX kernels run
        monkeypatch.setattr(kernels, "effective_isa", lambda flags, cap: "avx512_core_bf16")
        rec = {**kernels.record(), "threads": kernels.available_cores() + 3, "cpu": "Some Other CPU"}
        msg = kernels.restore(rec)
        assert (
            msg is not None
            and "\n" not in msg
            and "cpu" in msg
            and "(was Some Other CPU)" in msg
            and "threads" not in msg
        )
    finally:
        torch.set_num_threads(before)


def test_cpu_isa_config_is_checked_in_one_line():
    assert load_config(overrides=["--train.cpu_isa", "avx512_core_bf16"]).train.cpu_isa == "avx512_core_bf16"
    with pytest.raises(
        ConfigError, match=r"config train.cpu_isa: expected one of .*avx512_core_bf16.*got 'avx512_bf16'"
    ):
        load_config(overrides=["--train.cpu_isa", "avx512_bf16"])
