"""Shipped datasets load with the counts in SOURCES.md; files and records fail with clear errors."""

import gzip
import json

import pytest

from dashrl.data.datasets import DATASETS, FILES, DatasetError, load_dataset
from dashrl.rewards.sandbox import Limits, run_many

COUNTS = {
    ("math500", "test"): 500,
    ("math_train", "train"): 12000,
    ("gsm8k", "train"): 7473,
    ("gsm8k", "test"): 1319,
    ("aime24", "test"): 30,
    ("amc23", "test"): 40,
    ("minerva", "test"): 272,
    ("olympiadbench", "test"): 675,
    ("mbpp", "test"): 500,
    ("mbpp", "validation"): 90,
    ("mbpp", "train"): 374,
    ("mbpp", "prompt"): 10,
    ("mbppplus", "train"): 264,
    ("mbppplus", "test"): 114,
    ("mbppplus", "all"): 378,
    ("humaneval", "test"): 164,
    ("humanevalplus", "test"): 164,
}


def test_every_split_is_counted():
    assert {(name, split) for name, spec in DATASETS.items() for split in spec.files} == set(COUNTS)


@pytest.mark.parametrize("name,split", sorted(COUNTS))
def test_shipped_dataset_counts_and_fields(name, split):
    examples = load_dataset(name, split)
    assert len(examples) == COUNTS[name, split]
    assert len({ex.id for ex in examples}) == len(examples)
    for ex in examples:
        assert ex.problem.strip() and ex.meta["dataset"] == name
        if ex.kind == "code":
            assert ex.tests and ex.answer is None
        else:
            assert ex.kind == "math" and isinstance(ex.answer, str)
    empty = [ex.id for ex in examples if ex.kind == "math" and not ex.answer.strip()]
    assert len(empty) == (2 if name == "math_train" else 0)  # two empty \boxed{} upstream


def test_default_splits_and_known_answers():
    assert len(load_dataset("gsm8k")) == 1319
    assert load_dataset("gsm8k", "train", limit=1)[0].answer == "72"
    first = load_dataset("math500", limit=1)[0]
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.meta["subject"] == "Precalculus" and first.meta["level"] == 2
    assert load_dataset("amc23", limit=1)[0].answer == "27"  # 27.0 upstream
    assert load_dataset("aime24", limit=1)[0].answer == "204"
    assert load_dataset("minerva", limit=1)[0].answer == "1.6"
    nulls = [
        ex for ex in load_dataset("math_train") if ex.id in ("train/algebra/24014.json", "train/algebra/25040.json")
    ]
    assert sorted(ex.answer for ex in nulls) == ["2", "9"]


def test_mbppplus_split_is_a_partition():
    train = {ex.id for ex in load_dataset("mbppplus", "train")}
    test = {ex.id for ex in load_dataset("mbppplus", "test")}
    assert not train & test
    assert train | test == {ex.id for ex in load_dataset("mbppplus", "all")}


def test_limit():
    assert len(load_dataset("math500", limit=3)) == 3
    assert load_dataset("humaneval", limit=0) == []


def test_canonical_solutions_pass_and_wrong_ones_fail():
    he = {r["task_id"]: r for r in map(json.loads, gzip.open(FILES / "code/HumanEvalPlus-v0.1.10.jsonl.gz", "rt"))}
    mp = {r["task_id"]: r for r in map(json.loads, gzip.open(FILES / "code/MbppPlus-OriginFmt-v0.2.0.jsonl.gz", "rt"))}
    jobs = []
    for ex in load_dataset("humanevalplus", limit=2) + load_dataset("humaneval", limit=1):
        jobs.append((he[ex.id]["prompt"] + he[ex.id]["canonical_solution"], ex.tests, True))
        jobs.append((he[ex.id]["prompt"] + "    return None\n", ex.tests, False))
    for ex in load_dataset("mbppplus", "all", limit=2):
        jobs.append((mp[int(ex.id.split("/")[1])]["code"], ex.tests, True))
        jobs.append((f"def {ex.meta['entry_point']}(*args):\n    return None\n", ex.tests, False))
    results = run_many([(p, t) for p, t, _ in jobs], Limits(timeout=20.0))
    assert [r.status == "passed" for r in results] == [ok for _, _, ok in jobs]


def test_humanevalplus_runs_more_inputs_than_humaneval():
    plus = load_dataset("humanevalplus", limit=1)[0]
    base = load_dataset("humaneval", limit=1)[0]
    assert plus.tests.startswith(base.tests) and "_plus_check(has_close_elements)" in plus.tests


def _write(path, lines):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def test_local_jsonl_with_field_mapping(tmp_path):
    path = _write(
        tmp_path / "mine.jsonl.gz", [json.dumps({"q": "1+1?", "a": 2}), "", json.dumps({"q": "2+2?", "a": "4"})]
    )
    examples = load_dataset(path, problem_field="q", answer_field="a")
    assert [(ex.problem, ex.answer, ex.kind) for ex in examples] == [("1+1?", "2", "math"), ("2+2?", "4", "math")]
    default = load_dataset(_write(tmp_path / "d.jsonl", [json.dumps({"question": "q", "answer": "1"})]))
    assert default[0].problem == "q"
    code = load_dataset(_write(tmp_path / "c.jsonl", [json.dumps({"prompt": "p", "test": "assert True"})]))
    assert code[0].kind == "code" and code[0].tests == "assert True"


def test_bad_json_names_file_and_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", [json.dumps({"problem": "x", "answer": "1"}), "{not json"])
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: invalid JSON"):
        load_dataset(path)


def test_missing_field_names_file_line_and_field(tmp_path):
    path = _write(tmp_path / "m.jsonl", [json.dumps({"problem": "x", "answer": "1"}), json.dumps({"problem": "y"})])
    with pytest.raises(DatasetError, match=r"m\.jsonl:2: .*'answer'"):
        load_dataset(path)
    with pytest.raises(DatasetError, match=r"m\.jsonl:1: missing field 'question'"):
        load_dataset(path, problem_field="question")


def test_wrong_type_and_non_object(tmp_path):
    path = _write(tmp_path / "t.jsonl", [json.dumps({"problem": ["a list"], "answer": "1"})])
    with pytest.raises(DatasetError, match=r"t\.jsonl:1: field 'problem' should be"):
        load_dataset(path)
    with pytest.raises(DatasetError, match=r"l\.jsonl:1: expected a JSON object"):
        load_dataset(_write(tmp_path / "l.jsonl", ["[1, 2]"]))


def test_unknown_name_split_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="math500"):
        load_dataset("math5000")
    with pytest.raises(DatasetError, match="no split 'validation'"):
        load_dataset("math500", "validation")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "nothing.jsonl"))
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="broken.jsonl.gz: cannot read"):
        load_dataset(str(tmp_path / "broken.jsonl.gz"))


def test_field_names_rejected_for_named_sets():
    with pytest.raises(DatasetError):
        load_dataset("gsm8k", problem_field="question")


def test_sources_and_licenses_are_shipped():
    text = (FILES / "SOURCES.md").read_text()
    for spec in DATASETS.values():
        for rel in spec.files.values():
            assert (FILES / rel).is_file()
            assert rel in text
