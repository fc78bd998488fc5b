"""One sample's path, measured: the files of dashrl whose code runs during one training step of
`dashrl train` with the default config (dash, the hf sampler, bf16, the arithmetic task), as
docs/design.md lists them ("One sample's path"), in the order a step first enters them.

The rule (stated in docs/design.md): trace the schedule's step function for one step that
trains (rollout, reward, advantage, filter, backprop, optimizer step, sync) with
`sys.setprofile`; a file counts when a function defined in it runs. Start-up (CLI, config,
model, warm-up) and the loop's bookkeeping between steps are not part of a step. Two plug-ins
chosen by name count as the file that implements their interface, and what runs only beneath
them is listed apart: the task (`data/tasks.py`: the problems and the grader; a dataset or the
user's reward functions replace what is beneath) and the sampler backend (`rollout/hf.py`;
`--sampler.backend vllm` replaces it).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import dashrl
import dashrl.train.schedules as schedules
from dashrl.cli import main

SRC = Path(dashrl.__file__).parent
DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
PLUGINS = ("data/tasks.py", "rollout/hf.py")  # the task, the sampler backend
MOST = 12


def trace_step(step_fn, *args):
    """Run `step_fn(*args)` under a profiler; returns its rows, the files on the path (first
    entered first) and, per plug-in, the files that ran only beneath it."""
    path: list[str] = []
    beneath: dict[str, list[str]] = {p: [] for p in PLUGINS}

    def rel(code) -> str | None:
        f = Path(code.co_filename)
        return f.relative_to(SRC).as_posix() if f.is_relative_to(SRC) else None

    def profile(frame, event, arg):
        if event != "call":
            return
        name = rel(frame.f_code)
        if name is None or name in path:
            return
        up = frame.f_back
        while up is not None and rel(up.f_code) not in PLUGINS:
            up = up.f_back
        owner = rel(up.f_code) if up is not None else None
        if owner is None or name == owner:
            path.append(name)
            for files in beneath.values():  # a file the path enters itself is the path's
                if name in files:
                    files.remove(name)
        elif name not in beneath[owner]:
            beneath[owner].append(name)

    sys.setprofile(profile)
    try:
        rows = step_fn(*args)
    finally:
        sys.setprofile(None)
    return rows, path, beneath


def documented() -> tuple[list[str], dict[str, list[str]]]:
    """The numbered list of "One sample's path" in docs/design.md, and its lines "Beneath `X`: ..."."""
    text = DESIGN.read_text().split("## One sample's path", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\d+\. `([^`]+)`", text, flags=re.M)
    items = re.findall(r"^- Beneath `([^`]+)`: (.*?)(?=\n- |\n\n|\Z)", text, flags=re.M | re.S)
    beneath = {plugin: re.findall(r"`([^`]+)`", files) for plugin, files in items}
    return listed, beneath


def test_one_step_of_the_default_run_visits_the_documented_files(tmp_path, model_dir, monkeypatch):
    traced: list[tuple[list, list[str], dict[str, list[str]]]] = []
    real = schedules.schedule_fn

    def schedule_fn(cfg):
        step_fn = real(cfg)
        return lambda src, lrn, step: _record(traced, trace_step(step_fn, src, lrn, step))

    monkeypatch.setattr(schedules, "schedule_fn", schedule_fn)
    rc = main(["train", "--model.name", model_dir, "--train.steps", "8", "--sampler.max_new_tokens", "8",
               "--run.out_dir", str(tmp_path), "--run.name", "r", "--run.quiet", "true"])  # fmt: skip
    assert rc == 0
    trained = [t for t in traced if t[0][0].get("train/samples", 0) > 0 and "skipped" not in t[0][0]]
    assert trained, "no step of the run trained (every sample filtered): the trace would miss backprop"
    rows, path, beneath = trained[0]
    listed, documented_beneath = documented()
    assert len(path) <= MOST, f"one step visits {len(path)} files (at most {MOST}): {path}"
    assert path == listed, f"docs/design.md lists {listed}; one step visits {path}"
    assert {p: sorted(f) for p, f in beneath.items()} == {p: sorted(f) for p, f in documented_beneath.items()}
    assert all(f.startswith(("data/", "rewards/")) for f in beneath["data/tasks.py"])  # the task's own
    assert all(f.startswith("rollout/") for f in beneath["rollout/hf.py"])  # the backend's own


def _record(traced: list, result: tuple) -> list:
    traced.append(result)
    return result[0]
