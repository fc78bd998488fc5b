"""The multi-turn rollout on a scripted sampler (the tiny tokenizer, hand-written model turns): every
live trajectory in one generate call per turn, token in / token out, masks and logprobs of the
environment's tokens, limits, the text hook, tool counts and rewards."""

from __future__ import annotations


import pytest

from dashrl.data import Example
from dashrl.env.chat import delta_ids, env_messages
from dashrl.env.loading import EnvSpec
from dashrl.env.rollout import Limits, env_metrics, env_rewards, multi_turn, start, turn_seed
from dashrl.rollout.base import Completion, SamplingParams
from tests.conftest import make_tokenizer

CALL = '<tool_call>{"name": "add", "arguments": {"k": %d}}</tool_call>'


class Counter:
    def reset(self, answer, seed):
        self.n, self.target, self.seed = 0, int(answer), seed
        return "Reach the target."

    def add(self, k: int) -> int:
        """Add k.

        Args:
            k: how much
        """
        self.n += k
        return self.n

    def get_reward(self) -> float:
        return float(self.n == self.target)


class Scripted:
    """Answers the live rows of each generate call with the next texts of their scripts."""

    def __init__(self, tok, scripts):
        self.tok, self.scripts, self.calls = tok, [list(s) for s in scripts], []

    def generate(self, prompts, params, seed, start=0):
        self.calls.append((list(map(list, prompts)), params, seed))
        live = [i for i, s in enumerate(self.scripts) if s]
        out = []
        for i, _ in zip(live, prompts):
            text = self.scripts[i].pop(0)
            ids = self.tok(text, add_special_tokens=False)["input_ids"][: params.max_new_tokens]
            stop = len(ids) < params.max_new_tokens
            text = self.tok.decode(ids)
            ids = ids + [self.tok.eos_token_id] if stop else ids
            out.append(Completion(ids, text, [-0.5] * len(ids), "stop" if stop else "length"))
        return out


def run(scripts, limits=None, factory=Counter, max_new=64):
    limits = limits or Limits()
    tok = make_tokenizer()
    ex = Example(id="e1", problem="Get to 5.", answer="5")
    trajs = [start(EnvSpec(factory), ex, seed=3, tokenizer=tok) for _ in scripts]
    sampler = Scripted(tok, scripts)
    multi_turn(sampler, SamplingParams(max_new_tokens=max_new), trajs, seed=100, limits=limits, tokenizer=tok)
    return tok, trajs, sampler


def test_turns_advance_together_token_in_token_out():
    tok, (a, b), sampler = run([[CALL % 2, CALL % 3, "Done: 5"], ["It is 5."]])
    assert [len(c[0]) for c in sampler.calls] == [2, 1, 1]  # b finished after turn 1 and left the batch
    assert [c[2] for c in sampler.calls] == [turn_seed(100, t) for t in range(3)]
    assert sampler.calls[1][0][0] == a.prompt_ids + a.token_ids[: len(sampler.calls[1][0][0]) - len(a.prompt_ids)]
    assert "Reach the target." in tok.decode(a.prompt_ids) and "<tools>" in tok.decode(a.prompt_ids)
    # a's tokens: model, tool answer, model, tool answer, model; the answers exactly the template's deltas
    first = tok(CALL % 2, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    answer = delta_ids(tok, env_messages([("tool", "2")], False), "")
    assert a.token_ids[: len(first) + len(answer)] == first + answer
    assert a.mask[: len(first) + len(answer)] == [1] * len(first) + [0] * len(answer)
    assert all(lp == 0.0 for lp, m in zip(a.logprobs, a.mask) if m == 0)
    assert all(lp == -0.5 for lp, m in zip(a.logprobs, a.mask) if m == 1)
    assert len(a.token_ids) == len(a.mask) == len(a.logprobs)
    assert [(t.role, t.trained) for t in a.turns] == [("assistant", True), ("tool", False)] * 2 + [("assistant", True)]
    assert [t.text for t in a.turns if t.role == "tool"] == ["2", "5"]
    assert sum(t.n_tokens for t in a.turns) == len(a.token_ids)
    assert a.text == "Done: 5" and a.finish_reason == "stop" and b.finish_reason == "stop"
    assert env_rewards([a, b], "Counter") == [1.0, 0.0] and a.instance.seed == 3
    m = env_metrics([a, b])
    assert (m["env/tool_calls"], m["env/tool_calls/add"], m["env/tool_errors"], m["env/turns"]) == (1.0, 1.0, 0.0, 2.0)


def test_bad_calls_are_answered_with_their_errors_and_counted():
    _, (a,), _ = run([['<tool_call>{"name": "sub", "arguments": {}}</tool_call>', "<tool_call>oops</tool_call>", "5"]])
    assert [t.text for t in a.turns if t.role == "tool"][0].startswith("unknown tool 'sub'")
    assert a.calls == {"invalid": 2} and a.errors == {"invalid": 2}
    assert env_metrics([a])["env/tool_errors/invalid"] == 2.0


def test_limits_end_trajectories_with_their_reason():
    scripts = [[CALL % 1] * 5]
    assert run(scripts, Limits(max_turns=2))[1][0].finish_reason == "max_turns"
    _, (a,), _ = run(scripts, Limits(max_tool_calls=1))
    assert a.finish_reason == "max_tool_calls" and a.calls == {"add": 1}
    _, (a,), sampler = run(scripts, Limits(max_tokens=80))
    assert a.finish_reason == "max_tokens" and len(a.token_ids) <= 80
    assert all(c[1].max_new_tokens <= 80 for c in sampler.calls)
    assert run([["x" * 50]], max_new=10)[1][0].finish_reason == "length"
    # a turn cut at max_new_tokens after a whole call: the call runs, the template closes the turn
    tok, (a,), _ = run([[CALL % 5 + "x" * 40, "5"]], max_new=70)
    assert a.finish_reason == "stop" and [t.text for t in a.turns][1:] == ["5", "5"]
    assert a.token_ids[70 : 70 + 2] == tok("\n<", add_special_tokens=False)["input_ids"]  # no stop token sampled
    assert run([[CALL % 5, "5"]], max_new=60)[1][0].calls == {"invalid": 1}  # cut inside the call: malformed


def test_env_response_gives_text_turns_until_none():
    class Guess:
        def reset(self, **row):
            self.answer = row["answer"]

        def env_response(self, messages):
            return None if messages[-1]["content"].strip() == self.answer else "Wrong, try again."

        def get_reward(self):
            return 1.0

    tok, (a,), _ = run([["4", "5"]], factory=Guess)
    assert [(t.role, t.text, t.trained) for t in a.turns] == [
        ("assistant", "4", True),
        ("user", "Wrong, try again.", False),
        ("assistant", "5", True),
    ]
    assert "<tools>" not in tok.decode(a.prompt_ids)  # no tools: no tool prompt
    assert tok.decode([t for t, m in zip(a.token_ids, a.mask) if m == 0]) == "\n<user>Wrong, try again.\n<assistant>"


def test_tools_alone_without_a_class():
    def double(x: int) -> int:
        """Double.

        Args:
            x: a number
        """
        return 2 * x

    tok = make_tokenizer()
    t = start(EnvSpec(None, (double,)), Example(id="1", problem="2x?", answer="4"), 0, tok)
    s = Scripted(tok, [['<tool_call>{"name": "double", "arguments": {"x": 2}}</tool_call>', "4"]])
    multi_turn(s, SamplingParams(max_new_tokens=100), [t], 0, Limits(), tok)
    assert t.finish_reason == "stop", t.finish_reason
    assert [x.text for x in t.turns] == ['<tool_call>{"name": "double", "arguments": {"x": 2}}</tool_call>', "4", "4"]
    assert env_rewards([t], "") is None


def test_evaluate_runs_trajectories_and_grades_the_last_turn():
    from dashrl.eval import evaluate

    tok = make_tokenizer()
    examples = [Example(id="e1", problem="Get to 5.", answer="5")]
    sampler = Scripted(tok, [[CALL % 5, "\\boxed{5}"], ["\\boxed{4}"]])
    rep = evaluate(sampler, tok, examples, params=SamplingParams(max_new_tokens=64), n=2, ks=(1, 2),
                   env=EnvSpec(Counter), records=True)  # fmt: skip
    # sample 1: right answer (1) + get_reward (n == 5: 1); sample 2: wrong and n == 0
    assert rep["records"][0]["scores"] == [2.0, 0.0] and rep["accuracy"] == 0.5 and rep["pass_at_k"]["2"] == 1.0
    assert rep["env"]["env/tool_calls"] == 0.5 and rep["env"]["env/turns"] == 1.5
    assert [t["role"] for t in rep["records"][0]["turns"][0]] == ["assistant", "tool", "assistant"]
    assert rep["records"][0]["lengths"][0] == len(tok(CALL % 5 + "\\boxed{5}")["input_ids"]) + 2  # two <eos>


def test_dashrl_eval_checks_the_environment_before_the_model(tmp_path, monkeypatch, capsys):
    from dashrl.cli import main

    (tmp_path / "e.py").write_text("class E:\n    pass\n")
    monkeypatch.setattr("dashrl.models.load_model", lambda *a, **k: pytest.fail("the model loaded"))
    rc = main(["eval", "--model", "smollm2-135m", "--dataset", "arithmetic", "--limit", "2",
               "--env.factory", f"{tmp_path}/e.py:E"])  # fmt: skip
    assert rc == 2 and capsys.readouterr().err.strip().endswith("environment E: no reset(**row) method")
