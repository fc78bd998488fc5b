"""The default configuration repeats bit for bit: the real default model in its default precision
(`model.dtype = auto`: bf16 on a CPU with bf16 instructions, fp32 on an AVX2-only one), the hf sampler.

Issue 10 saw default bf16 runs of one config drift apart at step 2 (the gradient norm's
last digits, then the rewards). The cause: on CPU, torch's default accumulating
`index_put` (the backward of indexing a group's prompt keys/values out to its G rows in the
shared prompt pass) rounds differently with where the allocator placed its tensors, so
whatever a process did before (a checkpoint save, another run's history) moved the
gradient. `train.deterministic` (on by default) selects torch's deterministic kernels.

The promise (docs/repeatability.md): bit for bit on the same kind of CPU at the same intra-op
thread count. On CPUs with AMX tiles oneDNN's bf16 products depend on the thread count (this
test failed on an Intel Xeon while it compared 2 threads with 1), so each checkpoint records
the count and `--resume` restores it. The test runs the default path three ways that a
history-, memory- or restore-dependent run would tell apart, and asks for the same weights:

- run A: 2 steps straight, 2 threads;
- run B: the same 2-step run, with glibc filling every fresh and freed heap block with a byte
  pattern (`MALLOC_PERTURB_`), SIGKILLed as soon as its step-1 checkpoint is in place;
- run C: `--resume` of B in a fresh process started with `OMP_NUM_THREADS=1`: it must run at
  the recorded 2 threads (its checkpoint says so, which an AMD machine, where the count does
  not change the bits, checks too) and finish step 2 as A did.

Only the batch is shrunk (4 prompts x 8 completions, 32 new tokens) to keep the test short;
the model, dtype, sampler, shared prompt pass and optimizer are the defaults.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dashrl.runtime.kernels import available_cores

ARGS = ["--train.steps", "2", "--algo.prompts_per_step", "4", "--sampler.max_new_tokens", "32",
        "--run.save_every", "1", "--run.keep_state", "all", "--run.loggers", "", "--run.quiet", "true"]  # fmt: skip


def _train(out: Path, name: str, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dashrl.cli", "train", *extra]
    if "--resume" not in extra:
        cmd += [*ARGS, "--run.out_dir", str(out), "--run.name", name]
    return subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    return out


def _weights(run: Path, step: int) -> dict:
    return load_file(str(run / "checkpoints" / f"step-{step:06d}" / "model.safetensors"))


def _grad_norms(run: Path) -> list[float]:
    return [json.loads(line)["grad_norm"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _threads(run: Path, step: int) -> int:
    return json.loads((run / "checkpoints" / f"step-{step:06d}" / "dashrl_state.json").read_text())["kernels"][
        "threads"
    ]


@pytest.mark.skipif(available_cores() < 2, reason="needs 2 cores: the resume restores 2 threads")
def test_default_bf16_run_repeats_across_heap_contents_and_resume_at_its_thread_count(tmp_path):
    _finish(_train(tmp_path, "a", env={"OMP_NUM_THREADS": "2"}))
    b = _train(tmp_path, "b", env={"OMP_NUM_THREADS": "2", "MALLOC_PERTURB_": "85"})
    ckpt = tmp_path / "b" / "checkpoints"
    while not (ckpt / "latest").exists() and b.poll() is None:
        time.sleep(0.05)
    b.send_signal(signal.SIGKILL)
    b.communicate()
    assert not (ckpt / "step-000002").exists(), "run B finished before it was killed"
    out = _finish(_train(tmp_path, "b", "--resume", str(tmp_path / "b"), env={"OMP_NUM_THREADS": "1"}))

    assert "bit for bit" not in out, out  # nothing differs from the record: no warning
    assert _threads(tmp_path / "a", 2) == _threads(tmp_path / "b", 1) == _threads(tmp_path / "b", 2) == 2
    assert _grad_norms(tmp_path / "a") == _grad_norms(tmp_path / "b")
    wa, wc = _weights(tmp_path / "a", 2), _weights(tmp_path / "b", 2)
    assert wa.keys() == wc.keys()
    differing = [k for k in wa if not (wa[k] == wc[k]).all()]
    assert not differing, f"{len(differing)} tensors differ, e.g. {differing[:3]}"
    moved = [k for k, v in _weights(tmp_path / "a", 1).items() if not (v == wa[k]).all()]
    assert moved, "step 2 changed no weight: nothing was compared"
