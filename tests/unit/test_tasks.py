"""Task streams: deterministic problems, epochs without repeats, arithmetic grading."""

import pytest

from dashrl.config import TaskConfig
from dashrl.data import Example
from dashrl.data.arithmetic import arithmetic_example, integer_reward
from dashrl.data.tasks import _from_examples, make_task


def test_arithmetic_is_a_pure_function_of_seed_and_index():
    a = [arithmetic_example(3, i, 2).problem for i in range(20)]
    assert a == [arithmetic_example(3, i, 2).problem for i in range(20)]
    assert a != [arithmetic_example(4, i, 2).problem for i in range(20)]
    for i in range(50):
        ex = arithmetic_example(0, i, 2)
        x, op, y = ex.problem.removeprefix("What is ").rstrip("?").split()
        assert int(ex.answer) == {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op]
        assert 10 <= int(x) <= 99 and 10 <= int(y) <= 99


@pytest.mark.parametrize(
    "completion, answer, reward",
    [
        ("\\boxed{42}", "42", 1.0),
        ("The answer is 42.", "42", 1.0),
        ("6 * 7 = 42", "42", 1.0),
        ("\\boxed{-3}", "-3", 1.0),
        ("\\boxed{1,000}", "1000", 1.0),
        ("42 or maybe \\boxed{41}", "42", 0.0),
        ("\\boxed{42.5}", "42", 0.0),
        ("", "42", 0.0),
        ("forty-two", "42", 0.0),
    ],
)
def test_integer_reward(completion, answer, reward):
    assert integer_reward(completion, answer) == reward


def test_dataset_epochs_cover_every_example_once_in_a_new_order():
    exs = [Example(id=str(i), problem=str(i), answer=str(i)) for i in range(10)]
    task = _from_examples("t", exs, seed=0)
    epoch0 = [task.get(i).id for i in range(10)]
    epoch1 = [task.get(i).id for i in range(10, 20)]
    assert sorted(epoch0) == sorted(epoch1) == sorted(e.id for e in exs)
    assert epoch0 != epoch1
    assert [e.id for e in task.batch(1, 5)] == epoch0[5:]
    assert [task.get(i).id for i in range(10)] == epoch0  # going back reproduces the order


def test_named_dataset_task_loads_and_grades():
    task = make_task(TaskConfig(name="gsm8k", split="test", limit=5), seed=0)
    assert task.size == 5
    ex = task.get(0)
    assert task.score([ex, ex], [f"so \\boxed{{{ex.answer}}}", "\\boxed{-1}"]) == [1.0, 0.0]


def test_a_dataset_task_with_no_problems_is_a_dataset_error(tmp_path):
    from dashrl.config import TaskConfig
    from dashrl.data.datasets import DatasetError
    from dashrl.data.tasks import make_task

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DatasetError, match=r"empty.jsonl: no problems to train on"):
        make_task(TaskConfig(name=str(tmp_path / "empty.jsonl")), seed=0)


@pytest.mark.parametrize("name, generate", [("arithmetic", arithmetic_example), ("wordproblems", None)])
def test_limit_on_a_procedural_task_is_a_pool_of_its_first_problems(name, generate):
    from dashrl.data.wordproblems import wordproblem_example

    generate = generate or wordproblem_example
    task = make_task(TaskConfig(name=name, limit=3, difficulty=2), seed=5)
    first = [generate(5, i, 2).problem for i in range(3)]
    assert task.size == 3
    epochs = [[ex.problem for ex in task.batch(e, 3)] for e in range(4)]
    assert all(sorted(epoch) == sorted(first) for epoch in epochs)  # each epoch: the same 3, each once
    assert len({tuple(epoch) for epoch in epochs}) > 1  # reshuffled per epoch, as a dataset is
    assert make_task(TaskConfig(name=name, difficulty=2), seed=5).size is None  # no limit: endless


@pytest.mark.parametrize("flag, value", [("split", "test"), ("subset", "main")])
def test_split_and_subset_on_a_procedural_task_are_refused_in_one_line(flag, value):
    from dashrl.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=rf"^config task.{flag}: wordproblems is a procedural task \(it has no"):
        load_config(overrides=["--task.name", "wordproblems", f"--task.{flag}", value])
    assert load_config(overrides=["--task.name", "gsm8k", f"--task.{flag}", value]).task.name == "gsm8k"
