"""Environments and tools, layer by layer with hand-made inputs: schemas and one-line errors, loading
by path, tool-call parsing, a turn's calls run at once with a time limit, the sandboxed python tool."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dashrl.env.calls import Call, parse_calls, run_turn
from dashrl.env.loading import check_factory, load_factory, load_tools, reset, spec_tools
from dashrl.env.tools import EnvError, make_tool, method_tools


class Counter:
    """A TRL-convention environment: reset, two tools, a reward."""

    def reset(self, **row):
        self.n = int(row.get("start", 0))
        return f"Start at {self.n}."

    def add(self, k: int) -> int:
        """Add k to the counter.

        Args:
            k: how much to add
        """
        self.n += k
        return self.n

    def fail(self, why: str) -> str:
        """Raise an error.

        Args:
            why: the message
        """
        raise RuntimeError(why)

    def get_reward(self) -> float:
        return float(self.n == 10)

    def _private(self):
        pass


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


def test_method_tools_are_the_public_methods_with_their_schemas():
    tools = method_tools(Counter())
    assert [t.name for t in tools] == ["add", "fail"]  # reset, get_reward and _private are not tools
    add = tools[0].schema["function"]
    assert add["description"] == "Add k to the counter."
    assert add["parameters"] == {
        "type": "object",
        "properties": {"k": {"type": "integer", "description": "how much to add"}},
        "required": ["k"],
    }


def test_a_tool_without_hints_or_docs_fails_in_one_line_naming_it():
    class Env:
        def reset(self, **row):
            pass

        def look(self, where):
            """Look.

            Args:
                where: a place
            """

    with pytest.raises(EnvError, match=r"^tool Env.look: argument where has no type hint$"):
        check_factory(Env)

    def undocumented(x: int) -> int:
        return x

    with pytest.raises(EnvError, match=r"^tool undocumented: no docstring"):
        make_tool(undocumented)

    def half(x: int, y: int) -> int:
        """Half documented.

        Args:
            x: one
        """

    with pytest.raises(EnvError, match=r"^tool half: the docstring has no description for the argument 'y'$"):
        make_tool(half)


def test_factory_checks_and_loading_by_path(tmp_path):
    with pytest.raises(EnvError, match=r"^environment object: no reset"):
        check_factory(object)
    src = tmp_path / "my_env.py"
    src.write_text(
        "class E:\n"
        "    def reset(self, **row):\n        return None\n"
        "    def ping(self) -> str:\n        '''Answer pong.'''\n        return 'pong'\n"
        "def echo(text: str) -> str:\n    '''Echo.\n\n    Args:\n        text: what to echo\n    '''\n    return text\n"
    )
    cls = load_factory(f"{src}:E")
    (fn,) = load_tools([f"{src}:echo"])
    assert [t.name for t in spec_tools(cls(), [fn])] == ["ping", "echo"]
    with pytest.raises(EnvError, match=r"^env.factory '.*:Nope': .* defines no 'Nope'|has no attribute 'Nope'"):
        load_factory(f"{src}:Nope")
    with pytest.raises(EnvError, match=r"^env.tools 'nowhere.py:f': no such file"):
        load_tools(["nowhere.py:f"])


def test_reset_gets_the_row_keys_its_signature_takes_and_the_seed_where_asked():
    class Narrow:
        def reset(self, answer, seed):
            self.got = (answer, seed)

    env = Narrow()
    assert reset(env, {"answer": "4", "problem": "2+2"}, seed=7) is None
    assert env.got == ("4", 7)
    assert reset(Counter(), {"start": 3, "other": 1}, seed=0) == "Start at 3."


def test_parse_calls_hermes_form_and_malformed():
    text = (
        'I will add.<tool_call>\n{"name": "add", "arguments": {"k": 2}}\n</tool_call>'
        '<tool_call>{"name": "add", "arguments": "{\\"k\\": 3}"}</tool_call>'
        "<tool_call>{oops</tool_call><tool_call>[1]</tool_call>"
        '<tool_call>{"name": "add", "arguments": {"k": 4}}'  # unclosed at the end of the turn
    )
    calls = parse_calls(text)
    assert calls[0] == Call("add", {"k": 2}) and calls[1] == Call("add", {"k": 3})
    assert calls[2].error.startswith("malformed") and calls[3].error.startswith("malformed")
    assert calls[4] == Call("add", {"k": 4})
    assert parse_calls('{"name": "add"}') == []  # no arguments: an answer, not a call
    # bare JSON, the form of templates that write calls untagged (Llama 3.1, Mistral)
    assert parse_calls('<|python_tag|>{"name": "add", "parameters": {"k": 1}}') == [Call("add", {"k": 1})]
    assert parse_calls('{"name": "add", "arguments": {"k": 1}} and more') == []  # not a call alone
    assert parse_calls('[{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]') == [Call("a"), Call("b")]


def test_run_turn_turns_every_failure_into_text_and_runs_calls_at_once():
    env = Counter()
    env.reset(start=1)
    tools = {t.name: t.fn for t in spec_tools(env, [multiply])}
    calls = [
        Call("add", {"k": 2}),
        Call("nope", {}),
        Call("add", {"k": "x", "j": 1}),
        Call("fail", {"why": "boom"}),
        Call("", error="malformed tool call"),
        Call("multiply", {"a": 6, "b": 7}),
    ]
    with ThreadPoolExecutor(8) as pool:
        (answers,) = run_turn([(calls, tools)], pool, timeout=5.0)
    assert [(a.text, a.error) for a in answers] == [
        ("3", False),
        ("unknown tool 'nope'; tools: add, fail, multiply", True),
        ("tool add: bad arguments: got an unexpected keyword argument 'j'", True),
        ("tool fail raised RuntimeError: boom", True),
        ("malformed tool call", True),
        ("42", False),
    ]

    barrier = threading.Barrier(3, timeout=5)  # passes only when 3 calls of 3 trajectories run together

    def meet(i: int) -> int:
        """Wait for the others.

        Args:
            i: who
        """
        barrier.wait()
        return i

    with ThreadPoolExecutor(3) as pool:
        out = run_turn([([Call("meet", {"i": i})], {"meet": meet}) for i in range(3)], pool, timeout=10.0)
    assert [a[0].text for a in out] == ["0", "1", "2"]


def test_a_tool_past_its_time_limit_answers_with_a_timeout():
    def slow(s: float) -> str:
        """Sleep.

        Args:
            s: seconds
        """
        time.sleep(s)
        return "done"

    pool = ThreadPoolExecutor(2)
    (answers,) = run_turn([([Call("slow", {"s": 3.0}), Call("slow", {"s": 0.0})], {"slow": slow})], pool, 0.5)
    pool.shutdown(wait=False)
    assert (answers[0].text, answers[0].error) == ("tool slow: timed out after 0.5 s", True)
    assert answers[1].text == "done"


def test_python_tool_runs_in_the_sandbox():
    from dashrl.tools import python

    assert python("print(sum(range(10)))") == "45"
    assert python("import socket; socket.create_connection(('1.1.1.1', 80), 1)").split(":")[0] in (
        "OSError",
        "PermissionError",
        "ConnectionRefusedError",
        "socket.gaierror",
    )
    assert python("raise ValueError('bad')") == "ValueError: bad"
    assert make_tool(python).schema["function"]["parameters"]["required"] == ["code"]


def test_pythonic_calls_are_parsed_and_never_run(tmp_path):
    """Llama 3.2's pythonic form: keyword literals only; anything else is malformed or not a call,
    and nothing in the text runs (a call that would write a file writes nothing)."""
    from dashrl.env.calls import Call, parse_calls

    assert parse_calls('[calculate(expression="2 + 3")]') == [Call("calculate", {"expression": "2 + 3"})]
    assert parse_calls("[f(x=[1, {'a': 2}], y=None)]") == [Call("f", {"x": [1, {"a": 2}], "y": None})]
    target = tmp_path / "pwned"
    for text in (f"[f(x=open({str(target)!r}, 'w'))]", "[f(x=(lambda: 1))]", "[f(**{'x': 1})]"):
        (call,) = parse_calls(text)
        assert call.name == "f" and call.error.startswith("malformed tool call f"), text
    assert not target.exists()
    assert parse_calls(f"[__import__('os').system('touch {target}')]") == []
    assert parse_calls("[" * 100_000) == [] and parse_calls("[" * 500 + "f()" + "]" * 500) == []
    assert parse_calls("<tool_call>" + "[" * 100_000 + "</tool_call>")[0].error.startswith("malformed")
    assert parse_calls("The answer is [3].") == []
