"""Checkpoints, written atomically: a crash mid-write leaves the old one whole.

A checkpoint is a folder `RUN/checkpoints/step-NNNNNN` (NNNNNN = optimizer steps done) with

- the weights and tokenizer from `save_pretrained` (loadable by plain transformers), in
  fp32 or, with `run.save_dtype = "bf16"`, in bf16 (half the size, for sharing); with LoRA
  (`lora.r > 0`) peft's adapter files instead, in fp32 (`dashrl.policy`);
- `trainer_state.pt`: optimizer and LR-scheduler state, every RNG state (python, numpy,
  torch) and the step counters: what `dashrl train --resume` needs to go on bit for bit
  (plus the fp32 master weights when the weights file is bf16). The optimizer moments are
  twice the size of the fp32 weights, so by default (`run.keep_state = "latest"`) only the
  newest checkpoint keeps this file; older ones are weights only;
- `dashrl_state.json`: step, sampling cycle and wall time, readable without torch.

It is written into `checkpoints/.tmp-*`, every file fsynced, renamed into place, and the
folder fsynced; then `checkpoints/latest` (written the same way) names it. A crash at any
point leaves the previous checkpoint whole, and `latest_checkpoint` falls back to the
newest whole folder if `latest` was not yet updated. Retention (`prune_checkpoints`) keeps
the newest K and the one named by `checkpoints/best.json`.

Files and folders get the modes of other files the process creates (0644 and 0755 under
the usual umask 022): run files are for everyone to read.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

from dashrl.runtime.io import atomic_write_text, fsync_dir, share

STATE_FILE = "trainer_state.pt"
INFO_FILE = "dashrl_state.json"
MASTER_KEY = "master_weights"  # in STATE_FILE when the weights file is not fp32
KEEP_STATE = ("all", "latest", "none")
SAVE_DTYPES = ("fp32", "bf16")


# -- RNG state --------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Every global RNG state, as tensors and ints (loadable with `torch.load(weights_only=True)`)."""
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": list(random.getstate()[1]) + [random.getstate()[2]],
        "python_version": random.getstate()[0],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((state["python_version"], tuple(py[:-1]), py[-1]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- save ---------------------------------------------------------------------------------
def step_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    extra: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    save_dtype: str = "fp32",
) -> Path:
    """Save weights + tokenizer (`save_pretrained`), `state` (a torch file) and `extra` (JSON).

    `model` is a `dashrl.policy.Policy` (a LoRA policy writes peft's adapter files instead
    of the whole model) or a plain transformers model.

    `save_dtype="bf16"` writes the weights file in bf16; `state`, if given, then also holds
    the fp32 weights (`MASTER_KEY`), which `load_weights(model, ckpt, state)` restores.
    Written into a temporary folder, then renamed to `checkpoints/step-NNNNNN`; the file
    `checkpoints/latest` names the newest whole checkpoint. An existing whole checkpoint of
    the same step is kept as it is (the state at a step does not change).

    >>> save_checkpoint(run_dir, 10, model, tok, {"cycle": 10}, trainer_state)  # doctest: +SKIP
    PosixPath('runs/x/checkpoints/step-000010')
    """
    import torch

    from dashrl.policy import MERGED, as_policy

    if save_dtype not in SAVE_DTYPES:
        raise ValueError(f"save_dtype: expected one of {', '.join(SAVE_DTYPES)}, got {save_dtype!r}")
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = step_dir(run_dir, step)
    if is_complete(final):
        atomic_write_text(ckpt_root / "latest", final.name + "\n")
        return final
    policy = as_policy(model)
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=".tmp-"))
    try:
        exact = policy.save(tmp, save_dtype)
        if exact is not None and state is not None:
            state = {**state, MASTER_KEY: exact}
        tokenizer.save_pretrained(tmp)
        if (tmp / MERGED).is_dir():  # a LoRA checkpoint's merged model: a whole model folder
            tokenizer.save_pretrained(tmp / MERGED)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        (tmp / INFO_FILE).write_text(json.dumps({"step": step, "weights_dtype": save_dtype, **(extra or {})}, indent=1))
        share(tmp)
        _fsync_files(tmp)  # file contents on disk before the rename makes them visible
        if final.exists():  # a folder without its info file: a leftover, never a whole checkpoint
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(ckpt_root)
    atomic_write_text(ckpt_root / "latest", final.name + "\n")
    return final


def _fsync_files(folder: Path) -> None:
    """Flush every file under `folder` to disk."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def is_complete(ckpt: Path) -> bool:
    """A checkpoint folder that was renamed into place (its info file is written last)."""
    return ckpt.is_dir() and not ckpt.name.startswith(".") and (ckpt / INFO_FILE).is_file()


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Whole checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob("step-*") if is_complete(p)), key=lambda p: p.name)


def latest_checkpoint(run_dir: Path, resumable: bool = True) -> Path | None:
    """The newest whole checkpoint (with a `trainer_state.pt` if `resumable`), or None.

    Found by listing the folders, not by trusting `checkpoints/latest`: a crash between
    the rename and the update of that file leaves it one checkpoint behind.
    """
    found = [p for p in list_checkpoints(run_dir) if not resumable or (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def read_info(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / INFO_FILE).read_text())


# -- load ---------------------------------------------------------------------------------
def load_weights(model: Any, ckpt: Path, state: dict[str, Any] | None = None) -> None:
    """Copy the weights saved in `ckpt` into `model` (a Policy or a transformers model) in place, exactly.

    If `state` (the checkpoint's `load_state`) holds fp32 master weights (a bf16 weights
    file), those are loaded instead, so a resume stays bit-exact. Tied weights (saved once
    by `save_pretrained`) are the only keys allowed to be missing.
    """
    from dashrl.policy import as_policy

    exact = state.get(MASTER_KEY) if state is not None else None
    as_policy(model).load(Path(ckpt), exact)


def load_state(ckpt: Path) -> dict[str, Any]:
    """The `trainer_state.pt` of a checkpoint (tensors and plain values only)."""
    import torch

    return torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=True)


# -- retention ----------------------------------------------------------------------------
def update_best(run_dir: Path, ckpt: Path, metric: str, value: float, mode: str) -> bool:
    """Record `ckpt` in `checkpoints/best.json` if `value` beats the recorded best; True if it did."""
    path = Path(run_dir) / "checkpoints" / "best.json"
    if path.is_file():
        best = json.loads(path.read_text())
        still_there = is_complete(path.parent / best["checkpoint"])
        better = value > best["value"] if mode == "max" else value < best["value"]
        if still_there and best.get("metric") == metric and not better:
            return False
    atomic_write_text(
        path, json.dumps({"checkpoint": ckpt.name, "metric": metric, "value": value, "mode": mode}) + "\n"
    )
    return True


def best_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / "best.json"
    if not path.is_file():
        return None
    ckpt = path.parent / json.loads(path.read_text())["checkpoint"]
    return ckpt if is_complete(ckpt) else None


def prune_checkpoints(run_dir: Path, keep_last: int, keep: Iterable[Path] = (), keep_state: str = "all") -> list[Path]:
    """Delete all but the newest `keep_last` whole checkpoints (0 = keep all) and those in
    `keep`, plus leftovers of interrupted saves; returns what was deleted. The folder that
    `latest` names is never deleted. `keep_state="latest"` also deletes the trainer state
    of every checkpoint but the newest one that has it (those stay weights-only)."""
    root = Path(run_dir) / "checkpoints"
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for tmp in root.glob(".tmp-*"):  # an interrupted save
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    if keep_state == "latest":
        newest = latest_checkpoint(run_dir)
        for ckpt in list_checkpoints(run_dir):
            if ckpt != newest:
                (ckpt / STATE_FILE).unlink(missing_ok=True)
    if keep_last <= 0:
        return removed
    whole = list_checkpoints(run_dir)
    latest = latest_checkpoint(run_dir, resumable=False)
    protected = set(whole[-keep_last:]) | {Path(k) for k in keep} | ({latest} if latest else set())
    for ckpt in whole:
        if ckpt not in protected:
            # Drop the info file first: a crash mid-delete leaves a folder that is not "whole".
            (ckpt / INFO_FILE).unlink(missing_ok=True)
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append(ckpt)
    return removed
