"""Checkpoint files: atomic saves, exact reloads, retention, metrics truncation and full disks."""

from __future__ import annotations

import errno
import json
import random

import pytest
import torch

from dashrl.train.checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_state,
    load_weights,
    prune_checkpoints,
    rng_state,
    save_checkpoint,
    set_rng_state,
    update_best,
)
from dashrl.train.metrics import Loggers, MetricsWriter, read_metrics, truncate_metrics


def _save(run_dir, step, tiny_lm, **kw):
    model, tok = tiny_lm
    return save_checkpoint(run_dir, step, model, tok, {"cycle": step}, {"x": torch.tensor([step])}, **kw)


def test_save_then_load_restores_weights_exactly(tmp_path, tiny_lm):
    from conftest import make_tiny_model

    model, tok = tiny_lm
    path = _save(tmp_path, 3, tiny_lm)
    other = make_tiny_model(len(tok), seed=1)
    assert not torch.equal(other.model.embed_tokens.weight, model.model.embed_tokens.weight)
    load_weights(other, path)
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert other.lm_head.weight.data_ptr() == other.model.embed_tokens.weight.data_ptr()  # still tied
    assert load_state(path)["x"].tolist() == [3]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000003"


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path, tiny_lm, monkeypatch):
    model, tok = tiny_lm
    first = _save(tmp_path, 1, tiny_lm)
    before = sorted(p.name for p in first.iterdir())

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tok, "save_pretrained", full_disk)
    with pytest.raises(OSError):
        _save(tmp_path, 2, tiny_lm)
    assert latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in first.iterdir()) == before
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))  # the half-written folder is gone
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == first.name


def test_latest_is_the_newest_whole_folder_even_if_the_pointer_lags(tmp_path, tiny_lm):
    _save(tmp_path, 1, tiny_lm)
    second = _save(tmp_path, 2, tiny_lm)
    (tmp_path / "checkpoints" / "latest").write_text("step-000001\n")  # crash before the pointer update
    (tmp_path / "checkpoints" / "step-000003").mkdir()  # a folder without its info file is not whole
    assert latest_checkpoint(tmp_path) == second


def test_retention_keeps_last_k_and_the_best(tmp_path, tiny_lm):
    values = {1: 0.5, 2: 0.9, 3: 0.1, 4: 0.2, 5: 0.3}
    for step, value in values.items():
        path = _save(tmp_path, step, tiny_lm)
        update_best(tmp_path, path, "eval/accuracy", value, "max")
        best = best_checkpoint(tmp_path)
        prune_checkpoints(tmp_path, keep_last=2, keep=[best])
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002", "step-000004", "step-000005"]
    assert best_checkpoint(tmp_path).name == "step-000002"
    assert json.loads((tmp_path / "checkpoints" / "best.json").read_text())["value"] == 0.9


def test_rng_state_round_trips(tmp_path):
    import numpy as np

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state()
    torch.save(state, tmp_path / "rng.pt")
    want = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == want


def test_truncate_metrics_drops_later_steps_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "r": s / 10}) + "\n" for s in range(1, 6)) + '{"step": 6, "r"')
    rows = truncate_metrics(path, 3)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert path.read_text().endswith("}\n")


def test_metrics_writer_cuts_off_a_line_that_hit_a_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    w = MetricsWriter(path)
    w.write({"step": 1})
    real_fsync = __import__("os").fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("dashrl.train.metrics.os.fsync", full)
    with pytest.raises(OSError):
        w.write({"step": 2, "x": "y" * 100})
    monkeypatch.setattr("dashrl.train.metrics.os.fsync", real_fsync)
    w.write({"step": 3})  # the next line starts on a line of its own
    w.close()
    assert path.read_text() == '{"step": 1}\n{"step": 3}\n'


def test_a_missing_or_failing_logger_warns_once_and_never_stops(tmp_path, monkeypatch):
    import io
    import sys

    class Boom:
        def init(self, **k):
            raise RuntimeError("no network")

    monkeypatch.setitem(sys.modules, "wandb", Boom())
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import fails: not installed
    err = io.StringIO()
    log = Loggers("wandb,mlflow", tmp_path, {}, stream=err)
    log.log({"step": 1, "reward/mean": 0.5, "skipped": "x"})
    log.close()
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert "mlflow is not installed" in lines[1] and "pip install mlflow" in lines[1]
    assert "could not start wandb" in lines[0]


def test_tensorboard_events_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    log = Loggers("tensorboard", tmp_path, {})
    log.log({"step": 1, "reward/mean": 0.5})
    log.close()
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_every_checkpoint_file_and_folder_gets_the_umask_modes(tmp_path, tiny_lm, umask):
    import os
    import stat

    old = os.umask(umask)
    try:
        path = _save(tmp_path, 1, tiny_lm)
        _save(tmp_path, 2, tiny_lm, save_dtype="bf16")
    finally:
        os.umask(old)
    root = tmp_path / "checkpoints"
    entries = [root, *root.rglob("*")]
    assert path / "model.safetensors" in entries and path / "trainer_state.pt" in entries and root / "latest" in entries
    for p in entries:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == want, (p.relative_to(tmp_path), oct(p.stat().st_mode))


def test_bf16_weights_file_is_half_the_size_loads_in_transformers_and_resumes_exactly(tmp_path, tiny_lm):
    from conftest import make_tiny_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model, tok = tiny_lm
    fp32 = _save(tmp_path / "a", 1, tiny_lm)
    bf16 = _save(tmp_path / "b", 1, tiny_lm, save_dtype="bf16")
    weights = load_file(bf16 / "model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}
    assert weights.keys() == load_file(fp32 / "model.safetensors").keys()  # tied weights saved once
    ratio = (bf16 / "model.safetensors").stat().st_size / (fp32 / "model.safetensors").stat().st_size
    assert ratio < 0.6  # 2 bytes a weight instead of 4, plus the same header
    shared = AutoModelForCausalLM.from_pretrained(bf16)
    assert shared.dtype == torch.bfloat16
    assert torch.equal(shared.model.embed_tokens.weight, model.model.embed_tokens.weight.to(torch.bfloat16))
    # The trainer state holds the fp32 master weights: a resume gets them back bit for bit.
    other = make_tiny_model(len(tok), seed=1)
    load_weights(other, bf16, load_state(bf16))
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        assert torch.equal(a, b), name
    # Without the state, the bf16 file alone gives the rounded weights (for sharing, not resuming).
    load_weights(other, bf16)
    w = model.model.embed_tokens.weight
    assert torch.equal(other.model.embed_tokens.weight, w.to(torch.bfloat16).float()) and not torch.equal(
        other.model.embed_tokens.weight, w
    )


def test_keep_state_latest_leaves_the_state_only_in_the_newest_checkpoint(tmp_path, tiny_lm):
    for step in (1, 2, 3):
        _save(tmp_path, step, tiny_lm)
        prune_checkpoints(tmp_path, keep_last=0, keep_state="latest")
    ckpts = list_checkpoints(tmp_path)
    assert [(p / "trainer_state.pt").is_file() for p in ckpts] == [False, False, True]
    assert [(p / "model.safetensors").is_file() for p in ckpts] == [True, True, True]
    assert latest_checkpoint(tmp_path) == ckpts[-1]
    prune_checkpoints(tmp_path, keep_last=0, keep_state="all")  # "all" deletes nothing
    assert (ckpts[-1] / "trainer_state.pt").is_file()
