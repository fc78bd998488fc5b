"""Tools: a plain function, or a public method of an environment instance, with type hints and a
docstring (TRL's convention). `Tool` holds the callable and its JSON schema (transformers'
`get_json_schema`, imported when a tool is made, so importing this module stays light).

A tool that cannot be described fails with `EnvError`, one line naming the function and what
is missing.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence


class EnvError(ValueError):
    """A user's environment or tool that dashrl cannot use; the one-line message says why."""


@dataclass(frozen=True)
class Tool:
    """A callable the model may call, with the schema the model is shown."""

    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any]  # {"type": "function", "function": {"name", "description", "parameters"}}


def make_tool(fn: Callable[..., Any], owner: str = "") -> Tool:
    """`fn` as a `Tool`; `owner` (a class name) prefixes the error's name for a method.

    >>> def add(a: int, b: int) -> int:
    ...     '''Add two integers.
    ...
    ...     Args:
    ...         a: the first
    ...         b: the second
    ...     '''
    ...     return a + b
    >>> make_tool(add).schema["function"]["parameters"]["required"]
    ['a', 'b']
    >>> make_tool(lambda x: x)
    Traceback (most recent call last):
    ...
    dashrl.env.tools.EnvError: tool <lambda>: no docstring (a line saying what it does, and Args: for each argument)
    """
    from transformers.utils import get_json_schema
    from transformers.utils.chat_template_utils import DocstringParsingException, TypeHintParsingException

    name = getattr(fn, "__name__", repr(fn))
    where = f"tool {owner + '.' if owner else ''}{name}"
    try:
        schema = get_json_schema(fn)
    except TypeHintParsingException as e:
        arg = str(e).split("Argument ")[-1].split(" is missing")[0]
        raise EnvError(f"{where}: argument {arg} has no type hint") from None
    except DocstringParsingException as e:
        msg = str(e)
        if "no docstring" in msg:
            raise EnvError(f"{where}: no docstring (a line saying what it does, and Args: for each argument)") from None
        raise EnvError(f"{where}: {msg.split('because ')[-1]}") from None
    except Exception as e:  # noqa: BLE001 - any other schema failure is one line too
        raise EnvError(f"{where}: cannot describe it: {type(e).__name__}: {e}") from None
    schema["function"].pop("return", None)
    return Tool(name, fn, schema)


def method_tools(instance: Any) -> list[Tool]:
    """The tools of an environment instance: its public methods other than the hooks
    (`reset`, `get_reward`, `env_response`), in definition order."""
    cls = type(instance)
    out = []
    for name in _public_methods(cls):
        out.append(make_tool(getattr(instance, name), cls.__name__))
    return out


HOOKS = ("reset", "get_reward", "env_response")


def _public_methods(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__[:-1]):  # base classes first, `object` left out
        for name, value in vars(klass).items():
            if name.startswith("_") or name in HOOKS or name in names:
                continue
            if inspect.isfunction(value):
                names.append(name)
    return names


def tool_table(tools: Sequence[Tool]) -> dict[str, Tool]:
    """Tools by name; two tools of one name fail.

    >>> tool_table([])
    {}
    """
    out: dict[str, Tool] = {}
    for t in tools:
        if t.name in out:
            raise EnvError(f"tool {t.name}: two tools have this name")
        out[t.name] = t
    return out
