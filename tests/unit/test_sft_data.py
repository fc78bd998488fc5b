"""SFT data: human solutions of the shipped datasets graded by the task's own reward; JSONL pairs."""

import json

import pytest

from dashrl.data import Example
from dashrl.data.datasets import DatasetError
from dashrl.data.sft import build_records, gsm8k_solution, human_pairs, load_pairs
from dashrl.rewards import math_reward

NATALIA = (
    "Natalia sold 48/2 = 24 clips in May.\n"
    "Natalia sold 48+24 = 72 clips altogether in April and May.\n"
    "The answer is \\boxed{72}."
)


def test_gsm8k_conversion_of_the_first_train_record():
    example, completion = human_pairs("gsm8k", limit=1)[0]
    assert example.answer == "72"
    assert completion == NATALIA


def test_gsm8k_solution_strips_every_calculator_note_and_commas():
    text = gsm8k_solution("a = <<2*3=6>>6, b = <<6+1,000=1006>>1006\n#### 1,006")
    assert text == "a = 6, b = 1006\nThe answer is \\boxed{1006}."
    with pytest.raises(ValueError):
        gsm8k_solution("no final line")


def test_every_gsm8k_human_solution_grades_correct():
    pairs = human_pairs("gsm8k")  # all 7473 train records
    assert len(pairs) == 7473
    assert sum(math_reward(c, ex.answer) for ex, c in pairs) == len(pairs)


def test_math_human_solutions_grade_correct():
    pairs = human_pairs("math", limit=1500)
    share = sum(math_reward(c, ex.answer) for ex, c in pairs) / len(pairs)
    assert share >= 0.998, f"only {share:.4f} of the MATH train solutions grade correct"


@pytest.mark.slow
def test_all_math_human_solutions_grade_correct_but_the_two_empty_boxes():
    wrong = {ex.id for ex, c in human_pairs("math") if math_reward(c, ex.answer) < 1.0}
    assert wrong == {"train/number_theory/7115.json", "train/number_theory/7117.json"}  # empty \\boxed{} upstream


def test_wordproblem_solutions_grade_correct():
    pairs = human_pairs("wordproblems", limit=300, difficulty=4)
    assert all(math_reward(c, ex.answer) == 1.0 for ex, c in pairs)


def test_mbppplus_reference_code_passes_its_own_tests():
    from dashrl.rewards import code_rewards

    pairs = human_pairs("mbppplus", limit=4)
    assert all(c.startswith("```python\n") and c.endswith("\n```") for _, c in pairs)
    assert code_rewards([c for _, c in pairs], [ex.tests for ex, _ in pairs], 20.0) == [1.0] * 4
    # and a wrong program fails the same tests: the reward is not vacuous
    broken = pairs[0][1].replace("return", "return None and", 1)
    assert code_rewards([broken], [pairs[0][0].tests], 20.0) == [0.0]


def test_unknown_task_has_no_human_solutions():
    with pytest.raises(DatasetError, match="ships no human solutions"):
        human_pairs("aime24")


def test_load_pairs_with_renamed_fields_and_errors(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"q": "1+1?", "out": "\\boxed{2}", "answer": 2, "id": "a"}) + "\n")
    ((ex, completion),) = load_pairs(str(path), problem_field="q", completion_field="out")
    assert (ex.id, ex.problem, ex.answer, ex.kind, completion) == ("a", "1+1?", "2", "math", "\\boxed{2}")
    with pytest.raises(DatasetError, match=r"t.jsonl:1: missing field 'completion'"):
        load_pairs(str(path), problem_field="q")
    path.write_text(json.dumps({"problem": "p", "completion": "c", "kind": "sql"}) + "\n")
    with pytest.raises(DatasetError, match=r"t.jsonl:1: field 'kind'"):
        load_pairs(str(path))


def test_records_render_the_prompt_as_rl_does_and_end_with_eos(tiny_lm):
    from dashrl.data.prompts import build_prompt

    _, tok = tiny_lm
    code = Example(id="c", problem="Write f.", kind="code", tests="assert f() == 1")
    math = Example(id="m", problem="2+3?", answer="5")
    records = build_records(tok, [(math, "Sum: \\boxed{5}"), (code, "```python\ndef f(): return 1\n```")])
    for record, (example, text) in zip(
        records, [(math, "Sum: \\boxed{5}"), (code, "```python\ndef f(): return 1\n```")]
    ):
        assert record.prompt_ids == build_prompt(tok, example)
        assert record.completion_ids[-1] == tok.eos_token_id
        assert tok.decode(record.completion_ids[:-1]) == text
    assert "python code block" in tok.decode(records[1].prompt_ids)  # the code instruction, as RL asks


@pytest.mark.slow
def test_records_on_the_default_model_stop_where_its_sampler_stops():
    from dashrl.models import cache_dir, load_model, stop_token_ids

    if not (cache_dir() / "models" / "smollm2-135m-instruct" / "config.json").is_file():
        pytest.skip("needs the cached smollm2-135m checkpoint")
    model, tok = load_model("smollm2-135m")
    (record,) = build_records(tok, human_pairs("gsm8k", limit=1))
    assert record.completion_ids[-1] in stop_token_ids(tok, model)
    assert tok.decode(record.completion_ids, skip_special_tokens=True) == NATALIA
    assert tok.decode(record.prompt_ids).endswith(
        "Put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    )
