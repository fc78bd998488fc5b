"""A run that cannot go fails before any model loads, in one line, and leaves nothing behind;
hints fit the command in use."""

from __future__ import annotations

import json
import os

import pytest

from dashrl.cli import main
from dashrl.train.loop import RunError, train

from test_resume import letter_task
from test_resume_errors import config, one_line_error


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: every check here must come first."""

    def load_model(*a, **k):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("dashrl.models.load_model", load_model)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_an_unwritable_out_dir_fails_before_the_model_loads(no_model, capsys):
    # as root, os.access says /proc is writable; the probe file says otherwise
    assert main(["train", "--run.out_dir", "/proc/nope", "--run.name", "x"]) == 1
    assert "cannot write the run folder /proc/nope/x: /proc is not writable" in one_line_error(capsys)


def test_an_unknown_eval_set_fails_before_the_model_loads_and_leaves_no_folder(no_model, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "--run.out_dir", str(runs), "--eval.every", "2", "--eval.datasets", "arithmetic,nosuch"]) == 1
    err = one_line_error(capsys)
    assert "unknown dataset 'nosuch'" in err and "arithmetic" in err
    assert not runs.exists()


def test_resuming_a_complete_run_says_so_before_loading(tmp_path, tiny_lm, no_model, capsys):
    model, tok = tiny_lm
    cfg = config(tmp_path, train={"steps": 2})
    res = train(cfg, model, tok, task=letter_task())
    before = (res.run_dir / "metrics.jsonl").read_text()
    capsys.readouterr()  # the run's own step lines
    assert main(["train", "--resume", str(res.run_dir)]) == 1
    err = one_line_error(capsys)
    assert f"run {res.run_dir} is complete" in err and "step 2 of train.steps 2" in err
    assert f"dashrl train --resume {res.run_dir} --train.steps 4" in err
    with pytest.raises(RunError, match="is complete"):  # the same --run.name again: also complete
        train(cfg, model, tok, task=letter_task())
    assert (res.run_dir / "metrics.jsonl").read_text() == before


def test_resume_with_a_changed_field_points_to_a_new_run_not_another_name(tmp_path, tiny_lm, capsys):
    model, tok = tiny_lm
    res = train(config(tmp_path, train={"steps": 1}), model, tok, task=letter_task())
    capsys.readouterr()  # the run's own step lines
    assert main(["train", "--resume", str(res.run_dir), "--algo.group_size", "2"]) == 2
    err = one_line_error(capsys)
    assert "only --train.steps and --run.* may change, not --algo.group_size" in err
    assert f"dashrl train --config {res.run_dir / 'config.toml'} --algo.group_size 2 --run.name NEW_NAME" in err
    assert "choose another --run.name" not in err


def test_a_local_code_dataset_trains_and_scores_with_task_tests_field(tmp_path, tiny_lm):
    from dashrl.config import TaskConfig
    from dashrl.data.tasks import make_task

    path = tmp_path / "code.jsonl"
    records = [{"q": f"Write add{i}(a, b) returning a + b.", "checks": f"assert add{i}(1, 2) == 3\n"} for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    task = make_task(TaskConfig(name=str(path), problem_field="q", tests_field="checks"), seed=0)
    examples = [task.get(i) for i in range(4)]
    assert {ex.kind for ex in examples} == {"code"}
    right = [f"```python\ndef {ex.tests.split('(')[0].split()[-1]}(a, b):\n    return a + b\n```" for ex in examples]
    wrong = [text.replace("a + b", "a - b") for text in right]
    assert task.score(examples, right) == [1.0] * 4
    assert task.score(examples, wrong) == [0.0] * 4
    model, tok = tiny_lm
    cfg = config(tmp_path, task={"name": str(path), "problem_field": "q", "tests_field": "checks"}, train={"steps": 1})
    rows = train(cfg, model, tok).rows
    assert [r["step"] for r in rows] == [1] and rows[0]["reward/mean"] == 0.0  # a random model writes no valid code


def test_a_missing_answer_field_hint_names_the_flag_of_the_command(tmp_path, no_model, capsys):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "solution": "2"}) + "\n")
    assert main(["train", "--task.name", str(path), "--run.out_dir", str(tmp_path / "runs")]) == 1
    err = one_line_error(capsys)
    assert "name it with --task.answer_field" in err and "--answer-field" not in err
    assert main(["eval", "--model", "m", "--dataset", str(path)]) == 1
    assert "name it with --task.answer_field" in one_line_error(capsys)  # the same flag works in eval


def test_unknown_task_lists_the_training_tasks(no_model, tmp_path, capsys):
    assert main(["train", "--task.name", "arithmetc", "--run.out_dir", str(tmp_path)]) == 1
    err = one_line_error(capsys)
    assert "did you mean 'arithmetic'?" in err
    names = err.split("valid names: ")[1]
    for name in ("arithmetic", "math", "gsm8k", "math_train", "mbppplus"):
        assert f" {name}," in f" {names}"
