"""Bring-your-own task end to end on the tiny model: the docs example (CLI and Python) as
written, a reward function that raises mid-run, and the sample log."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_config

from dashrl.train.loop import RunError, train
from dashrl.train.metrics import read_metrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "custom-tasks.md"
SMALL = ["--train.steps", "2", "--algo.prompts_per_step", "2", "--algo.group_size", "2",
         "--sampler.max_new_tokens", "6",
         "--train.micro_batch_size", "4", "--model.dtype", "fp32", "--run.quiet", "true"]  # fmt: skip


def doc_blocks() -> tuple[dict[str, str], list[str]]:
    """The doc's `# file: NAME` python blocks and its bash commands."""
    text = DOC.read_text()
    files = {m.group(1): m.group(0).split("\n", 1)[1] for m in re.finditer(r"# file: (\S+)\n.*?(?=```)", text, re.S)}
    files = {
        name: body
        for name, body in ((n, re.search(rf"# file: {re.escape(n)}\n(.*?)```", text, re.S).group(1)) for n in files)
    }
    bash = re.search(r"```bash\n(.*?)```", text, re.S).group(1).replace("\\\n", " ")
    return files, [line.split() for line in bash.strip().splitlines()]


def test_docs_example_runs_as_written(tmp_path, model_dir):
    files, commands = doc_blocks()
    assert set(files) == {"make_data.py", "my_rewards.py", "train_sums.py"}
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    assert commands[0] == ["python", "make_data.py"]
    subprocess.run([sys.executable, "make_data.py"], cwd=tmp_path, check=True, env=env)
    cli = commands[1]
    assert cli[:2] == ["dashrl", "train"]
    # as written, then a tiny model and a small batch so that it runs on CPU in seconds (later flags win)
    proc = subprocess.run([sys.executable, "-m", "dashrl", *cli[1:], "--model.name", model_dir, *SMALL],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_metrics(tmp_path / "runs" / "sums" / "metrics.jsonl")
    assert {"reward/correct_reward", "reward/format_reward"} <= set(rows[-1]) and "accuracy" not in rows[-1]
    lines = (tmp_path / "runs" / "sums" / "samples.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    assert rec["prompt"].startswith("<user>What is ") and set(rec["completions"][0]["rewards"]) == {
        "correct_reward",
        "format_reward",
    }
    # the Python form, as written, with the same tiny model (dashrl.train's overrides take these on top)
    script = (
        "import sys, dashrl.train.api as api\n"
        f"small = {dict(zip([a[2:] for a in SMALL[::2]], SMALL[1::2]))!r}\n"
        f"small['model.name'] = {model_dir!r}\n"
        "real = api.train\n"
        "api.train = lambda overrides, **kw: real({**overrides, **small}, **kw)\n"
        "exec(open('train_sums.py').read())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_dir, mean, correct = proc.stdout.split()[-3:]
    assert Path(run_dir).name == "sums-py" and 0.0 <= float(correct) <= 1.0


def test_reward_that_raises_keeps_checkpoints_and_resume_continues(tmp_path, tiny_lm):
    model, tok = tiny_lm
    state = tmp_path / "calls"
    rewards = tmp_path / "flaky.py"
    rewards.write_text(
        "from pathlib import Path\n"
        f"STATE = Path({str(state)!r})\n"
        "def flaky(completions, **kwargs):\n"
        "    n = int(STATE.read_text()) if STATE.exists() else 0\n"
        "    STATE.write_text(str(n + 1))\n"
        "    if n == 1 and not Path(str(STATE) + '.fixed').exists():\n"
        "        raise ZeroDivisionError('bad luck')\n"
        "    return [float(len(c) % 2) for c in completions]\n"
    )
    cfg = tiny_config(tmp_path, task={"name": "arithmetic"},
                      reward={"funcs": f"integer,{rewards}:flaky", "weights": "1,0.5"},
                      train={"steps": 3}, run={"save_every": 1})  # fmt: skip
    import copy

    initial, reference = copy.deepcopy(model), copy.deepcopy(model)
    with pytest.raises(RunError) as err:
        train(cfg, model, tok)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("reward function 'flaky' raised ZeroDivisionError: bad luck (batch from record ")
    assert (
        " at step 2; the last checkpoint (step 1) is intact; fix the function and resume with: dashrl train --resume "
        in msg
    )
    run_dir = tmp_path / "run"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-000001"
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1]
    assert {json.loads(line)["step"] for line in (run_dir / "samples.jsonl").read_text().splitlines()} == {1}
    Path(str(state) + ".fixed").write_text("")
    res = train(cfg, initial, tok, resume=True)
    rows = read_metrics(res.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    logged = [(r["step"], r["group"]) for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())]
    assert logged == [(1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]  # run.sample_groups = 2, each step once
    assert all({"reward/integer", "reward/flaky", "accuracy"} <= set(r) for r in rows)
    # the weighted sum: reward/mean = mean(integer) + 0.5 * mean(flaky) (neither returns None)
    for r in rows:
        assert r["reward/mean"] == pytest.approx(r["reward/integer"] + 0.5 * r["reward/flaky"])
    # and the resumed run is the run that never failed, bit for bit
    import torch

    whole = train(tiny_config(tmp_path, task={"name": "arithmetic"},
                              reward={"funcs": f"integer,{rewards}:flaky", "weights": "1,0.5"},
                              train={"steps": 3}, run={"name": "whole"}), reference, tok)  # fmt: skip
    assert [r["reward/mean"] for r in read_metrics(whole.run_dir / "metrics.jsonl")] == [r["reward/mean"] for r in rows]
    for (n, p), q in zip(initial.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(p, q), n


def test_bad_function_fails_before_the_model_loads(tmp_path):
    cfg = tiny_config(tmp_path, model={"name": "/nonexistent/model"}, reward={"funcs": "os.path:nope"})
    with pytest.raises(RunError, match=r"^reward function 'os.path:nope': os.path has no attribute 'nope'$"):
        train(cfg)


def test_sample_log_is_bounded(tmp_path, tiny_lm):
    model, tok = tiny_lm
    cfg = tiny_config(
        tmp_path, task={"name": "arithmetic"}, train={"steps": 3}, run={"sample_groups": 1, "sample_log_mb": 0}
    )
    res = train(cfg, model, tok)
    recs = [json.loads(line) for line in (res.run_dir / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["group"], len(r["completions"])) for r in recs] == [(1, 0, 4), (2, 0, 4), (3, 0, 4)]
    c = recs[0]["completions"][0]
    assert set(c) == {"text", "reward", "rewards", "correct", "advantage", "kept", "tokens", "finish_reason"}
    assert c["kept"] == (abs(c["advantage"]) > 0.01) and c["correct"] == float(c["reward"] >= 1)
    from dashrl.train.sample_log import SampleLog

    log = SampleLog(res.run_dir, 1, 1e-6, tok, 0.01)  # a cap already reached: nothing more is written
    assert log.write(4, [object()]) == []


def test_python_api_validates_before_the_model_loads(tmp_path):
    import dashrl
    from dashrl.config import ConfigError
    from dashrl.data.datasets import DatasetError

    base = {"model.name": "/nonexistent/model", "run.out_dir": str(tmp_path)}  # any model load would fail differently

    def fmt(completions, **kwargs):
        return [0.0] * len(completions)

    def positional(text):
        return [0.0]

    with pytest.raises(ConfigError, match=r"^config: unknown key 'train.stesp'; did you mean 'steps'\?"):
        dashrl.train({**base, "train.stesp": 2}, dataset=[{"prompt": "x"}], reward_funcs=[fmt])
    with pytest.raises(DatasetError, match=r"^dataset:row 2: field 'prompt' message 0 should be"):
        dashrl.train(base, dataset=[{"prompt": "x"}, {"prompt": [{"content": "y"}]}], reward_funcs=[fmt])
    with pytest.raises(RunError, match=r"^reward function 'positional' cannot take the call"):
        dashrl.train(base, dataset=[{"prompt": "x"}], reward_funcs=[positional])
    with pytest.raises(RunError, match=r"^2 reward functions but 1 weights"):
        dashrl.train(base, dataset=[{"prompt": "x"}], reward_funcs=[fmt, "integer"], reward_weights=[1.0])
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_python_records_take_field_names_and_a_limit(tmp_path):
    """With `dataset=`, the default task name (a procedural task, which has no fields) does not
    apply: `task.problem_field` and `task.limit` read the records, and the run gets as far as
    loading the model."""
    import dashrl
    from dashrl.models import ModelError

    def fmt(completions, **kwargs):
        return [0.0] * len(completions)

    overrides = {
        "model.name": "/nonexistent/model",
        "run.out_dir": str(tmp_path),
        "task.problem_field": "q",
        "task.limit": 1,
    }
    with pytest.raises(ModelError):
        dashrl.train(
            overrides, dataset=[{"q": "1+1?", "answer": "2"}, {"q": "2+2?", "answer": "4"}], reward_funcs=[fmt]
        )


def test_tensorboard_gets_the_sample_table(tmp_path, tiny_lm):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, tok = tiny_lm
    res = train(
        tiny_config(tmp_path, task={"name": "arithmetic"}, run={"loggers": "tensorboard", "sample_groups": 1}),
        model,
        tok,
    )
    acc = EventAccumulator(str(res.run_dir / "tensorboard"), size_guidance={"tensors": 0})
    acc.Reload()
    assert "samples/text_summary" in acc.Tags()["tensors"]
    events = acc.Tensors("samples/text_summary")
    assert [e.step for e in events] == [1, 2]
    text = events[0].tensor_proto.string_val[0].decode()
    assert text.startswith("| step | group | prompt | completion | reward | advantage | kept |") and "What is" in text
