"""Reward functions in TRL's convention: loading, keywords, weighted sums, None, faults, accuracy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from dashrl.config import TaskConfig
from dashrl.data import Example
from dashrl.data.tasks import grade_with, make_task, task_from_records
from dashrl.rewards.funcs import RewardError, check_signature, func_means, load_reward_fn, reward_funcs, score


def comp(text: str, ids=(5, 6)) -> SimpleNamespace:
    return SimpleNamespace(text=text, token_ids=list(ids))


def test_weighted_sum_by_hand_with_none_counting_zero():
    def a(completions, **kw):
        return [1.0, None, 0.25]

    def b(completions, **kw):
        return [None, 2.0, 4.0]

    total, per = score(reward_funcs([a, b], [0.5, -1.5]), ["p"] * 3, ["x", "y", "z"], [[1]] * 3, {})
    # 0.5*1 + 0 ; 0 - 1.5*2 ; 0.5*0.25 - 1.5*4
    assert total == [0.5, -3.0, 0.125 - 6.0]
    assert per == {"a": [1.0, None, 0.25], "b": [None, 2.0, 4.0]}
    assert func_means(per) == {"reward/a": 0.625, "reward/b": 3.0}


def test_keywords_a_function_receives():
    seen = {}

    def spy(prompts, completions, completion_ids, **kwargs):
        seen.update(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)
        return [0.0] * len(completions)

    chat = [{"role": "user", "content": "hi"}]
    examples = [
        Example(
            id="r1", problem="hi", messages=chat, columns={"prompt": chat, "lang": "en", "answer": "1"}, answer="1"
        ),
        Example(id="r2", problem="yo", columns={"prompt": "yo", "lang": "fr"}),
    ]
    grade_with(reward_funcs([spy]), examples, [comp("A"), comp("B", (9,))])
    assert seen["prompts"] == [chat, "yo"]
    assert seen["completions"] == [[{"role": "assistant", "content": "A"}], "B"]  # chat prompt -> message list, as TRL
    assert seen["completion_ids"] == [[5, 6], [9]]
    assert seen["lang"] == ["en", "fr"] and seen["answer"] == ["1", None]
    assert "prompt" not in seen  # as TRL: the prompt column arrives as `prompts`


def test_procedural_task_gives_problem_and_answer_columns():
    seen = {}

    def spy(completions, problem, answer, **kw):
        seen.update(problem=problem, answer=answer)
        return [1.0] * len(completions)

    task = make_task(TaskConfig(name="arithmetic"), seed=0, funcs=[spy])
    ex = task.get(0)
    scored = task.grade([ex], [comp("27")])
    assert seen == {"problem": [ex.problem], "answer": [ex.answer]}
    assert scored.rewards == [1.0] and scored.correct == [float(ex.answer == "27")]


def test_builtins_are_registry_entries_and_combine_with_user_functions():
    def fmt(completions, **kw):
        return [0.5 if "\\boxed" in c else 0.0 for c in completions]

    task = make_task(TaskConfig(name="arithmetic"), seed=0, funcs=["integer", fmt], weights=[1.0, 2.0])
    ex = task.get(0)
    scored = task.grade([ex, ex], [comp(f"\\boxed{{{ex.answer}}}"), comp("no")])
    assert scored.rewards == [1.0 + 2 * 0.5, 0.0]
    assert scored.per_func == {"integer": [1.0, 0.0], "fmt": [0.5, 0.0]}
    assert scored.correct == [1.0, 0.0]


def test_accuracy_absent_without_a_check_and_from_the_check_otherwise():
    def big(completions, **kw):
        return [5.0] * len(completions)

    no_ref = task_from_records([{"prompt": "write"}], TaskConfig(), 0, [big])
    assert no_ref.grade([no_ref.get(0)], [comp("x")]).correct is None  # reward 5 but no check: no accuracy
    with_ref = task_from_records([{"problem": "1+1?", "answer": "2"}], TaskConfig(), 0, [big])
    assert with_ref.grade([with_ref.get(0)] * 2, [comp("\\boxed{2}"), comp("3")]).correct == [1.0, 0.0]


def test_async_function_is_awaited():
    async def later(completions, **kw):
        return [float(len(c)) for c in completions]

    assert score(reward_funcs([later]), ["p"], ["abc"], [[1]], {})[0] == [3.0]

    import asyncio

    async def inside_a_loop():  # as in a notebook, where an event loop is already running
        return score(reward_funcs([later]), ["p"], ["abcd"], [[1]], {})[0]

    assert asyncio.run(inside_a_loop()) == [4.0]


def test_load_module_and_file(tmp_path):
    assert load_reward_fn("os.path:basename").__name__ == "basename"
    f = tmp_path / "my_rewards.py"
    f.write_text("def fmt(completions, **kw):\n    return [1.0 for _ in completions]\n")
    fn = load_reward_fn(f"{f}:fmt")
    assert fn(completions=["a", "b"]) == [1.0, 1.0]
    from ray import cloudpickle  # Ray's own copy: the test extra installs Ray, not cloudpickle

    assert cloudpickle.loads(cloudpickle.dumps(fn))(completions=["a"]) == [1.0]  # travels to Ray actors by value


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mth", "unknown reward function 'mth' (did you mean 'math'?)"),
        (
            "no_such_module_xyz:f",
            "reward function 'no_such_module_xyz:f': cannot import 'no_such_module_xyz': ModuleNotFoundError",
        ),
        ("os.path:nope", "reward function 'os.path:nope': os.path has no attribute 'nope'"),
        ("os:sep", "reward function 'os:sep': 'sep' is a str, not a function"),
        ("missing/file.py:f", "reward function 'missing/file.py:f': no such file missing/file.py"),
    ],
)
def test_bad_names_fail_in_one_line(spec, message):
    with pytest.raises(RewardError) as err:
        load_reward_fn(spec)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_file_that_fails_to_import(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("import nonexistent_pkg_q\n")
    with pytest.raises(RewardError, match=r"importing .*broken.py failed: ModuleNotFoundError"):
        load_reward_fn(f"{f}:fmt")


def test_signature_that_cannot_take_the_convention():
    def two(text, ref):
        return [0.0]

    with pytest.raises(
        RewardError,
        match=r"^reward function 'two' cannot take the call fn\(prompts=, completions=, completion_ids=, answer=\)",
    ):
        check_signature(reward_funcs([two]), ["answer"])
    with pytest.raises(RewardError, match="cannot take the call"):  # at task build, before any model
        make_task(TaskConfig(name="arithmetic"), seed=0, funcs=[two])


def test_weights_and_names_checked():
    with pytest.raises(RewardError, match="2 reward functions but 1 weights"):
        reward_funcs(["math", "integer"], [1.0])
    with pytest.raises(RewardError, match="appears twice"):
        reward_funcs(["math", "math"])

    def mean(completions, **kw):
        return [0.0]

    with pytest.raises(RewardError, match="clashes with the metric reward/mean"):
        reward_funcs([mean])


@pytest.mark.parametrize(
    "values, message",
    [
        ([1.0], "reward function 'bad' returned 1 values for 2 completions (record 'a' ...)"),
        ([1.0, math.nan], "reward function 'bad' returned nan for record 'b'; expected a finite float or None"),
        ([1.0, "high"], "reward function 'bad' returned 'high' (str) for record 'b'; expected a float or None"),
        (0.5, "reward function 'bad' returned float, expected a list of 2 floats"),
    ],
)
def test_bad_values_name_function_and_record(values, message):
    def bad(completions, **kw):
        return values

    examples = [Example(id="a", problem="p", answer="1"), Example(id="b", problem="q", answer="1")]
    with pytest.raises(RewardError) as err:
        grade_with(reward_funcs([bad]), examples, [comp("x"), comp("y")])
    assert str(err.value) == message


def test_raising_function_is_named():
    def boom(completions, **kw):
        raise KeyError("solution")

    with pytest.raises(
        RewardError, match=r"^reward function 'boom' raised KeyError: 'solution' \(batch from record 'a'\)$"
    ):
        grade_with(reward_funcs([boom]), [Example(id="a", problem="p")], [comp("x")])


def test_default_task_reward_unchanged():
    task = make_task(TaskConfig(name="arithmetic"), seed=0)
    ex = task.get(0)
    scored = task.grade([ex, ex], [comp(ex.answer), comp("nope")])
    assert scored.rewards == [1.0, 0.0] and scored.per_func == {} and scored.correct == [1.0, 0.0]
