"""pass@k against hand-computed values; evaluate() and `dashrl eval` with a scripted sampler."""

import argparse
import json
import math
import sys
import types
from itertools import combinations

import pytest

from dashrl.data import Example
from dashrl.eval import evaluate, format_table, pass_at_k
from dashrl.cli.eval import add_arguments, run, write_json_atomic
from dashrl.rollout import Completion, SamplingParams


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (4, 1, 1, 0.25),
        (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        (4, 2, 2, 5 / 6),  # 1 - C(2,2)/C(4,2) = 1 - 1/6
        (5, 2, 3, 0.9),  # 1 - C(3,3)/C(5,3) = 1 - 1/10
        (10, 3, 5, 1 - 21 / 252),  # C(7,5)=21, C(10,5)=252
        (8, 7, 2, 1.0),  # n - c < k: every k-subset has a correct sample
        (8, 0, 8, 0.0),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_matches_subset_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            samples = [1] * c + [0] * (n - c)
            for k in range(1, n + 1):
                subsets = list(combinations(samples, k))
                oracle = sum(any(s) for s in subsets) / len(subsets)
                assert pass_at_k(n, c, k) == pytest.approx(oracle, abs=1e-12)


def test_pass_at_k_large_n_is_stable():
    assert pass_at_k(1000, 1, 1) == pytest.approx(0.001)
    expected = 1 - math.comb(999, 500) / math.comb(1000, 500)
    assert pass_at_k(1000, 1, 500) == pytest.approx(expected)
    assert 0.0 <= pass_at_k(10000, 3, 100) <= 1.0


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


class ScriptedSampler:
    """Returns canned texts in order; records what it was asked."""

    def __init__(self, texts, finish="stop"):
        self.texts, self.finish, self.calls = list(texts), finish, []

    def generate(self, prompts, params, seed):
        self.calls.append((len(prompts), params, seed))
        assert len(prompts) == len(self.texts)
        return [Completion(token_ids=list(range(len(t))), text=t, logprobs=[0.0] * len(t),
                           finish_reason=self.finish if i % 2 else "stop")
                for i, t in enumerate(self.texts)]  # fmt: skip


def _prompt(tokenizer, example):
    return [ord(ch) for ch in example.problem]


EXAMPLES = [
    Example(id="a", problem="1+1", answer="2", meta={"subject": "Algebra", "level": 1}),
    Example(id="b", problem="2+2", answer="4", meta={"subject": "Geometry", "level": 1}),
    Example(id="c", problem="add", kind="code", tests="assert add(1, 2) == 3"),
]


def test_evaluate_metrics():
    texts = [
        "\\boxed{2}", "\\boxed{3}",  # a: 1 of 2
        "\\boxed{5}", "\\boxed{5}",  # b: 0 of 2
        "```python\ndef add(a, b):\n    return a + b\n```", "def add(a, b): return 0",  # c: 1 of 2
    ]  # fmt: skip
    sampler = ScriptedSampler(texts, finish="length")
    params = SamplingParams(max_new_tokens=8, temperature=1.0)
    report = evaluate(sampler, None, EXAMPLES, params=params, n=2, ks=(1, 2, 4), seed=7,
                      build_prompt=_prompt, records=True)  # fmt: skip
    assert sampler.calls == [(6, params, 7)]
    assert report["accuracy"] == pytest.approx(2 / 6)
    assert report["pass_at_k"] == {"1": pytest.approx(2 / 6), "2": pytest.approx(2 / 3)}  # k=4 > n dropped
    assert report["mean_length"] == pytest.approx(sum(map(len, texts)) / 6)
    assert report["truncated"] == pytest.approx(0.5)
    assert report["by_subject"] == {"Algebra": {"accuracy": 0.5, "samples": 2},
                                    "Geometry": {"accuracy": 0.0, "samples": 2}}  # fmt: skip
    assert report["by_level"] == {"1": {"accuracy": 0.25, "samples": 4}}
    assert [r["correct"] for r in report["records"]] == [1, 0, 1]
    assert report["records"][2]["scores"] == [1.0, 0.0]


def test_evaluate_rejects_empty_and_bad_n():
    with pytest.raises(ValueError):
        evaluate(ScriptedSampler([]), None, [], params=SamplingParams(), build_prompt=_prompt)
    with pytest.raises(ValueError):
        evaluate(ScriptedSampler([]), None, EXAMPLES, params=SamplingParams(), n=0, build_prompt=_prompt)


def test_format_table():
    table = format_table({"math500": {"examples": 500, "accuracy": 0.25, "pass_at_k": {"1": 0.25, "4": 0.5},
                                      "mean_length": 300.0, "truncated": 0.1}})  # fmt: skip
    assert table.splitlines()[0].split() == [
        "dataset",
        "examples",
        "accuracy",
        "pass@1",
        "pass@4",
        "mean_len",
        "truncated",
    ]
    assert table.splitlines()[1].split() == ["math500", "500", "0.2500", "0.2500", "0.5000", "300.0", "0.1000"]


def test_write_json_atomic(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_json_atomic(str(path), {"a": 1})
    write_json_atomic(str(path), {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == {"a": 2}  # the old report survives a failed write
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_end_to_end_with_fake_model(tmp_path, monkeypatch, capsys):
    answers = {
        ex.problem: ex.answer
        for ex in __import__("dashrl.data.datasets", fromlist=["x"]).load_dataset("gsm8k", limit=3)
    }

    class Tok:
        pass

    class Sampler:
        def generate(self, prompts, params, seed):
            assert params.temperature == 0.0 and params.max_new_tokens == 16
            texts = [
                f"\\boxed{{{answers[''.join(map(chr, p))]}}}" if i % 3 else "no idea" for i, p in enumerate(prompts)
            ]
            return [Completion([1, 2], t, [0.0, 0.0], "stop") for t in texts]

    models = types.ModuleType("dashrl.models")
    models.load_model = lambda spec, **kw: (object(), Tok())
    models.ModelError = RuntimeError
    prompts = types.ModuleType("dashrl.data.prompts")
    prompts.build_prompt = lambda tok, ex: [ord(c) for c in ex.problem]
    monkeypatch.setitem(sys.modules, "dashrl.models", models)
    monkeypatch.setitem(sys.modules, "dashrl.data.prompts", prompts)
    monkeypatch.setattr("dashrl.rollout.make_sampler", lambda name, **kw: Sampler())
    out = tmp_path / "report.json"
    code = run(
        _parse("--model", "fake", "--dataset", "gsm8k", "--limit", "3", "--max-new-tokens", "16", "--out", str(out))
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["results"]["gsm8k"]["accuracy"] == pytest.approx(2 / 3)
    assert report["settings"]["k"] == [1] and report["settings"]["temperature"] == 0.0
    assert "gsm8k" in capsys.readouterr().out


def test_command_rejects_bad_input(capsys):
    assert run(_parse("--model", "m", "--dataset", "nope")) == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert run(_parse("--model", "m", "--dataset", "gsm8k", "--n", "2", "--k", "1,4")) == 2
    with pytest.raises(SystemExit):
        _parse("--model", "m", "--dataset", "gsm8k", "--k", "a,b")
