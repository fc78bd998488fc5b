"""`dashrl eval` takes train's flags and validation, checks its output first, fails in one line,
evaluates the held-out arithmetic set exactly as training does, and honours model.dtype."""

from __future__ import annotations

import json
import sys
import types

import pytest

from dashrl.cli import main
from dashrl.rollout import Completion


class FakeSampler:
    """Answers every arithmetic problem right (it reads the prompt), records its settings."""

    def __init__(self, **kwargs):
        self.kwargs, self.params, self.problems = kwargs, [], []

    def generate(self, prompts, params, seed):
        self.params.append(params)
        self.problems += ["".join(map(chr, p)) for p in prompts]
        out = []
        for p in prompts:
            a, op, b = "".join(map(chr, p)).removeprefix("What is ").rstrip("?").split()
            value = int(a) + int(b) if op == "+" else int(a) - int(b) if op == "-" else int(a) * int(b)
            out.append(Completion([1], f"\\boxed{{{value}}}", [0.0], "stop"))
        return out


@pytest.fixture
def fake(monkeypatch):
    """No model: load_model records its calls, the sampler is FakeSampler, prompts are the text."""
    calls = {"load": [], "samplers": []}
    models = types.ModuleType("dashrl.models")

    class ModelError(RuntimeError):
        pass

    def load_model(spec, **kw):
        calls["load"].append(spec)
        if spec == "missing":
            raise ModelError("model folder missing does not exist")
        return object(), object()

    models.ModelError, models.load_model = ModelError, load_model
    prompts = types.ModuleType("dashrl.data.prompts")
    prompts.build_prompt = lambda tok, ex: [ord(c) for c in ex.problem]
    monkeypatch.setitem(sys.modules, "dashrl.models", models)
    monkeypatch.setitem(sys.modules, "dashrl.data.prompts", prompts)

    def make_sampler(name, **kw):
        calls["samplers"].append(FakeSampler(name=name, **kw))
        return calls["samplers"][-1]

    monkeypatch.setattr("dashrl.rollout.make_sampler", make_sampler)
    return calls


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("dashrl: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_held_out_arithmetic_is_the_set_training_evaluates(fake, tmp_path, capsys):
    from dashrl.config import load_config
    from dashrl.train.evaluation import PeriodicEval

    out = tmp_path / "r.json"
    assert main(["eval", "--model.name", "m", "--dataset", "arithmetic", "--eval.limit", "7", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["results"]["arithmetic"]["examples"] == 7
    assert report["results"]["arithmetic"]["accuracy"] == 1.0  # graded like training's evaluation
    cfg = load_config(overrides=["--eval.every", "1", "--eval.datasets", "arithmetic", "--eval.limit", "7"])
    in_training = PeriodicEval(cfg.eval, None, cfg.task.difficulty).sets["arithmetic"]
    assert fake["samplers"][0].problems == [ex.problem for ex in in_training]  # the very same problems
    assert report["settings"]["temperature"] == 0.0  # greedy, as in training's evaluation
    assert (
        main(
            [
                "eval",
                "--model",
                "m",
                "--dataset",
                "arithmetic",
                "--eval.limit",
                "7",
                "--task.difficulty",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["settings"]["difficulty"] == 2


def test_arithmetic_examples_match_in_training_eval():
    from dashrl.config import load_config
    from dashrl.train.evaluation import PeriodicEval, load_eval_sets

    cfg = load_config(overrides=["--eval.every", "1", "--eval.datasets", "arithmetic"])
    in_training = PeriodicEval(cfg.eval, None, 1).sets["arithmetic"]
    assert [e.id for e in load_eval_sets(["arithmetic"], 0)["arithmetic"]] == [e.id for e in in_training]
    assert len(in_training) == 100 and in_training[0].id == "arith-1--1-0"


def test_dtype_is_honoured_and_flags_match_train(fake, capsys):
    from dashrl.config import load_config

    assert main(["eval", "--model", "m", "--dataset", "arithmetic", "--limit", "2"]) == 0
    default = load_config(None, []).model.dtype  # `auto`, resolved for this machine as training resolves it
    assert fake["samplers"][-1].kwargs["dtype"] == default in ("bf16", "fp32")
    assert main(["eval", "--model.name", "m", "--dataset", "arithmetic", "--model.dtype", "fp32", "--eval.limit", "2",
                 "--eval.max_new_tokens", "9", "--eval.batch_size", "3", "--sampler.top_k", "5"]) == 0  # fmt: skip
    sampler = fake["samplers"][-1]
    assert sampler.kwargs["dtype"] == "fp32"
    params = sampler.params[0]
    assert (params.max_new_tokens, params.batch_size, params.top_k, params.temperature) == (9, 3, 5, 0.0)
    assert main(["eval", "--model", "m", "--dataset", "arithmetic", "--limit", "2", "--temperature", "0.5"]) == 0
    assert fake["samplers"][-1].params[0].temperature == 0.5


@pytest.mark.parametrize(
    "flags, status, expected",
    [
        (["--batch-size", "0"], 2, "config eval.batch_size: expected >= 1, got 0"),
        (["--limit", "-1"], 2, "config eval.limit: expected >= 0, got -1"),
        (["--temperature", "-1"], 2, "config sampler.temperature: expected >= 0"),
        (["--max-new-tokens", "0"], 2, "config eval.max_new_tokens: expected >= 1, got 0"),
        (["--dtype", "fp16"], 2, "config model.dtype: expected one of auto, bf16, fp32"),
        (["--train.steps", "3"], 2, "--train.steps does not apply to dashrl eval"),
        (["--sampler.max_new_tokens", "3"], 2, "use --eval.max_new_tokens"),
        (["--model", "missing"], 1, "model folder missing does not exist"),
        (["--dataset", "arithmetc"], 1, "did you mean 'arithmetic'?"),
    ],
)
def test_bad_input_is_one_line(fake, capsys, flags, status, expected):
    base = ["--model", "m"] if "--model" not in flags else []
    data = ["--dataset", "gsm8k"] if "--dataset" not in flags else []
    assert main(["eval", *base, *data, *flags]) == status
    assert expected in one_line(capsys)


def test_an_unwritable_output_fails_before_anything_loads(fake, capsys, tmp_path):
    assert main(["eval", "--model", "m", "--dataset", "gsm8k", "--out", "/proc/nope/r.json"]) == 1
    assert "cannot write /proc/nope/r.json" in one_line(capsys)
    (tmp_path / "f").write_text("")
    assert main(["eval", "--model", "m", "--dataset", "gsm8k", "--out", str(tmp_path / "f" / "r.json")]) == 1
    assert "is a file, not a folder" in one_line(capsys)
    assert main(["eval", "--model", "m", "--dataset", "gsm8k", "--out", str(tmp_path)]) == 1
    assert "is a folder" in one_line(capsys)
    assert fake["load"] == [] and fake["samplers"] == []


def fake_run(tmp_path, steps):
    """A run folder with whole checkpoints of `steps` (their info files are what makes them whole)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text('[task]\nname = "arithmetic"\n')
    for step in steps:
        ckpt = run / "checkpoints" / f"step-{step:06d}"
        ckpt.mkdir()
        (ckpt / "config.json").write_text("{}")
        (ckpt / "dashrl_state.json").write_text(json.dumps({"step": step}))
    return run


def test_a_run_folder_is_evaluated_at_its_newest_checkpoint_or_the_step_asked(fake, tmp_path, capsys):
    run = fake_run(tmp_path, [2, 4, 6])
    out = tmp_path / "r.json"
    assert main(["eval", "--model", str(run), "--dataset", "arithmetic", "--limit", "2", "--out", str(out)]) == 0
    assert fake["load"] == [str(run / "checkpoints" / "step-000006")]
    assert json.loads(out.read_text())["settings"]["model"]["checkpoint"] == str(run / "checkpoints" / "step-000006")
    assert f"evaluating {run / 'checkpoints' / 'step-000006'}" in capsys.readouterr().err
    assert main(["eval", "--model.name", str(run), "--step", "4", "--dataset", "arithmetic", "--limit", "2"]) == 0
    assert fake["load"][-1] == str(run / "checkpoints" / "step-000004")
    capsys.readouterr()
    assert main(["eval", "--model", str(run), "--step", "5", "--dataset", "arithmetic"]) == 1
    assert one_line(capsys) == f"dashrl: run folder {run} has no checkpoint of step 5; it has steps 2, 4, 6"
    assert main(["eval", "--model", "m", "--step", "5", "--dataset", "arithmetic"]) == 1
    assert "--step picks a checkpoint of a run folder, and --model m is not one" in one_line(capsys)
    assert len(fake["load"]) == 2  # the refusals load nothing


def test_a_run_folder_without_a_checkpoint_is_one_line(fake, tmp_path, capsys):
    run = fake_run(tmp_path, [])
    assert main(["eval", "--model", str(run), "--dataset", "arithmetic"]) == 1
    assert one_line(capsys) == f"dashrl: run folder {run} has no checkpoint yet"
    (run / "checkpoints").rmdir()  # a run that died before its first save: config.toml only
    assert main(["eval", "--model", str(run), "--dataset", "arithmetic"]) == 1
    assert one_line(capsys) == f"dashrl: run folder {run} has no checkpoint yet"
    assert fake["load"] == []


def test_field_flags_are_refused_on_procedural_sets_and_read_for_files(fake, tmp_path, capsys):
    assert main(["eval", "--model", "m", "--dataset", "arithmetic", "--problem-field", "q"]) == 1
    assert "'arithmetic' is a procedural set (it has no records to read fields from)" in one_line(capsys)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"q": "What is 2 + 3?", "a": 5}) + "\n")
    run = fake_run(tmp_path, [1])  # a run of the procedural arithmetic task: its task.name is not eval's
    args = [
        "eval",
        "--config",
        str(run / "config.toml"),
        "--model",
        "m",
        "--dataset",
        str(data),
        "--problem-field",
        "q",
        "--answer-field",
        "a",
    ]
    assert main(args) == 0
    assert fake["samplers"][-1].problems == ["What is 2 + 3?"]
