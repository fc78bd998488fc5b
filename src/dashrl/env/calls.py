"""Tool calls: parsed out of a model turn's text, and run, a turn's calls at once in threads, each
with a time limit. Whatever goes wrong (a malformed call, an unknown tool, bad arguments, a tool
that raises or runs out of time) becomes the error text the model reads as the tool's answer.

The form is Hermes / Qwen's, which most tool-use chat templates (Qwen2.5, Hermes, SmolLM3) share:

    <tool_call>
    {"name": "multiply", "arguments": {"a": 12, "b": 34}}
    </tool_call>

A turn that is nothing but calls is read too: bare JSON (Llama 3.1, Mistral) or a Python list of
calls (Llama 3.2's pythonic form); `parse_calls` shows each.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import re
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class Call:
    """One parsed call; `error` is set (and `name` may be "") when the call cannot run."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str = ""


@dataclass(frozen=True)
class Answer:
    """A tool's answer to one call: its text, and whether it is an error."""

    name: str
    text: str
    error: bool


def parse_calls(text: str) -> list[Call]:
    """The `<tool_call>` blocks of a model turn, in order (an unclosed last block counts).

    >>> parse_calls('<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>')
    [Call(name='add', arguments={'a': 1}, error='')]
    >>> parse_calls("<tool_call>add(1)</tool_call>")[0].error
    'malformed tool call: expected {"name": ..., "arguments": {...}} in JSON'
    >>> parse_calls("no call here")
    []

    Without `<tool_call>` tags, a turn that is nothing but a call in JSON is one: the form of the
    templates that write calls bare (Llama 3.1's, after an optional `<|python_tag|>`; Mistral's list
    after `[TOOL_CALLS]`).

    >>> parse_calls('[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}]')
    [Call(name='add', arguments={'a': 1}, error='')]

    And a turn that is nothing but a list of calls written as Python (Llama 3.2's pythonic form),
    read by Python's parser and nothing run: keyword arguments of literal values only.

    >>> parse_calls('[add(a=1, b=2), echo(text="hi")]')
    [Call(name='add', arguments={'a': 1, 'b': 2}, error=''), Call(name='echo', arguments={'text': 'hi'}, error='')]
    """
    tagged = [_parse_one(m.group(1).strip()) for m in CALL_RE.finditer(text)]
    return tagged or _bare_calls(text)


BARE_PREFIXES = ("<|python_tag|>", "[TOOL_CALLS]")


def _bare_calls(text: str) -> list[Call]:
    body = text.strip()
    for prefix in BARE_PREFIXES:
        body = body.removeprefix(prefix).strip()
    if not body.startswith(("{", "[")):
        return []
    try:
        obj = json.loads(body)
    except RecursionError:  # brackets nested past the parser's depth: text, not a call
        return []
    except ValueError:
        return _pythonic_calls(body)
    items = obj if isinstance(obj, list) else [obj]
    if not items or not all(isinstance(o, dict) and "name" in o and ("arguments" in o or "parameters" in o)
                            for o in items):  # fmt: skip
        return []
    return [_parse_one(json.dumps(o)) for o in items]


PYTHONIC_MAX_CHARS = 20_000  # a longer "list of calls" is read as text (the parser's work grows with it)


def _pythonic_calls(body: str) -> list[Call]:
    """`[f(a=1), g(b="x")]` as calls; [] unless the whole text is such a list (model text: parsed,
    never run; positional arguments or non-literal values make a call malformed).

    >>> _pythonic_calls("[f(1)]")[0].error
    'malformed tool call f: only keyword arguments with literal values'
    >>> _pythonic_calls("[__import__('os').system('x')]"), _pythonic_calls("[1, 2]")
    ([], [])
    """
    if len(body) > PYTHONIC_MAX_CHARS:
        return []
    try:
        tree = ast.parse(body, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    if not isinstance(tree, ast.List) or not tree.elts:
        return []
    if not all(isinstance(e, ast.Call) and isinstance(e.func, ast.Name) for e in tree.elts):
        return []
    return [_pythonic_one(e) for e in tree.elts]


def _pythonic_one(node: ast.Call) -> Call:
    name = node.func.id
    bad = Call(name, error=f"malformed tool call {name}: only keyword arguments with literal values")
    if node.args or any(k.arg is None for k in node.keywords):
        return bad
    try:
        return Call(name, {k.arg: ast.literal_eval(k.value) for k in node.keywords})
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return bad


MALFORMED = 'malformed tool call: expected {"name": ..., "arguments": {...}} in JSON'


def _parse_one(body: str) -> Call:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return Call("", error=MALFORMED)
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return Call("", error=MALFORMED)
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except ValueError:
            return Call(obj["name"], error=f"tool {obj['name']}: arguments are not a JSON object")
    if not isinstance(args, dict):
        return Call(obj["name"], error=f"tool {obj['name']}: arguments are not a JSON object")
    return Call(obj["name"], args)


def check_call(call: Call, tools: Mapping[str, Any]) -> str:
    """The error text of a call that cannot run ("" when it can): unknown tool, missing or
    unexpected arguments (checked against the function's signature).

    >>> def add(a: int, b: int) -> int: return a + b
    >>> check_call(Call("sub", {}), {"add": add})
    "unknown tool 'sub'; tools: add"
    >>> check_call(Call("add", {"a": 1}), {"add": add})
    "tool add: bad arguments: missing a required argument: 'b'"
    """
    if call.error:
        return call.error
    if call.name not in tools:
        return f"unknown tool {call.name!r}; tools: {', '.join(tools) or '(none)'}"
    try:
        inspect.signature(tools[call.name]).bind(**call.arguments)
    except TypeError as e:
        return f"tool {call.name}: bad arguments: {e}"
    return ""


def run_calls(
    calls: Sequence[Call], tools: Mapping[str, Any], pool: ThreadPoolExecutor, timeout: float
) -> list[Answer]:
    """Run one trajectory's calls at once on `pool`, answers in call order (`run_turn` for many).

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> def add(a: int, b: int) -> int: return a + b
    >>> with ThreadPoolExecutor(2) as pool:
    ...     answers = run_calls([Call("add", {"a": 2, "b": 3}), Call("add", {"a": 1})], {"add": add}, pool, 5.0)
    >>> [(a.text, a.error) for a in answers]
    [('5', False), ("tool add: bad arguments: missing a required argument: 'b'", True)]
    """
    return run_turn([(calls, tools)], pool, timeout)[0]


def run_turn(
    jobs: Sequence[tuple[Sequence[Call], Mapping[str, Any]]], pool: ThreadPoolExecutor, timeout: float
) -> list[list[Answer]]:
    """Every call of a turn (`(calls, tools)` per trajectory) submitted before any is waited on,
    so the calls of all trajectories run at once; each answer within `timeout` seconds of the
    first wait. A tool's return value becomes its text (`as_text`)."""
    errors = [[check_call(c, tools) for c in calls] for calls, tools in jobs]
    futures = [
        [None if err else pool.submit(call_tool, tools[c.name], c.arguments) for c, err in zip(calls, errs)]
        for (calls, tools), errs in zip(jobs, errors)
    ]
    return [
        [_answer(c, err, fut, timeout) for c, err, fut in zip(calls, errs, futs)]
        for (calls, _), errs, futs in zip(jobs, errors, futures)
    ]


def call_tool(fn: Any, arguments: dict[str, Any]) -> Any:
    """`fn(**arguments)`; a coroutine function (an async tool) runs to its end in this thread's own loop.

    >>> async def ping(x: int) -> int: return x
    >>> call_tool(ping, {"x": 3})
    3
    """
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(**arguments))
    return fn(**arguments)


def _answer(call: Call, error: str, future: Any, timeout: float) -> Answer:
    if error:
        return Answer(call.name, error, True)
    try:
        value = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        return Answer(call.name, f"tool {call.name}: timed out after {timeout:g} s", True)
    except Exception as e:  # noqa: BLE001 - a tool's failure is the model's answer, never a crash
        return Answer(call.name, f"tool {call.name} raised {type(e).__name__}: {e}", True)
    return Answer(call.name, as_text(value), False)


def as_text(value: Any) -> str:
    """A tool's return value as the text the model reads.

    >>> as_text("hi"), as_text(3), as_text({"a": [1, 2]}), as_text(None)
    ('hi', '3', '{"a": [1, 2]}', 'null')
    """
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)
