"""A user's environment class and tools, by path or as objects, checked before any model loads;
and the per-rollout calls into an instance (`reset`, `get_reward`, `env_response`).

The convention is TRL's (`GRPOTrainer(environment_factory=..., tools=...)`): a class whose
instances have `reset(**row)` (returns None, or text appended to the last user message), public
methods with type hints and a docstring (each a tool), and optionally `get_reward()` (a float,
logged as `reward/<ClassName>`) and `env_response(messages)` (the environment's next message in a
turn without tool calls, or None when the episode is over). One instance per rollout.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dashrl.env.tools import EnvError, Tool, make_tool, method_tools, tool_table
from dashrl.runtime.user_code import UserCodeError, load


@dataclass(frozen=True)
class EnvSpec:
    """What a run's rollouts need of its environment: the factory (a class, or None for tools
    alone) and the plain tool functions."""

    factory: Callable[[], Any] | None = None
    tools: tuple[Callable[..., Any], ...] = ()

    @property
    def name(self) -> str:
        return getattr(self.factory, "__name__", "") if self.factory is not None else ""


def load_factory(spec: str) -> Callable[[], Any]:
    """The environment class `spec` names (`file.py:Class` or `module:Class`), checked."""
    try:
        obj = load(spec, "env.factory")
    except UserCodeError as e:
        raise EnvError(str(e)) from None
    check_factory(obj)
    return obj


def load_tools(specs: Sequence[str]) -> tuple[Callable[..., Any], ...]:
    """The tool functions `specs` name, each checked (`make_tool`)."""
    out = []
    for spec in specs:
        try:
            fn = load(spec, "env.tools")
        except UserCodeError as e:
            raise EnvError(str(e)) from None
        make_tool(fn)
        out.append(fn)
    return tuple(out)


def check_factory(factory: Any) -> None:
    """Fail in one line unless `factory` is a class of the convention: `reset`, and tools that can
    be described (made from an instance; the constructor must take no argument).

    >>> class NoReset: pass
    >>> check_factory(NoReset)
    Traceback (most recent call last):
    ...
    dashrl.env.tools.EnvError: environment NoReset: no reset(**row) method
    """
    name = getattr(factory, "__name__", repr(factory))
    if not callable(factory):
        raise EnvError(f"environment {name}: not a class or callable")
    if not callable(getattr(factory, "reset", None)):
        raise EnvError(f"environment {name}: no reset(**row) method")
    try:
        instance = factory()
    except Exception as e:  # noqa: BLE001 - user code: one line
        raise EnvError(f"environment {name}: constructing it failed: {type(e).__name__}: {e}") from None
    method_tools(instance)


def spec_tools(instance: Any, tools: Sequence[Callable[..., Any]]) -> list[Tool]:
    """One rollout's tools: its instance's methods, then the plain functions."""
    own = method_tools(instance) if instance is not None else []
    out = own + [make_tool(fn) for fn in tools]
    tool_table(out)
    return out


def reset(instance: Any, row: dict[str, Any], seed: int) -> str | None:
    """`instance.reset(**row)`, with only the keys its signature takes (all with `**kwargs`), and
    `seed` where it has a `seed` parameter; returns its text (None: nothing to append)."""
    params = inspect.signature(instance.reset).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        row = {k: v for k, v in row.items() if k in params}
    if "seed" in params:
        row = {**row, "seed": seed}
    out = instance.reset(**row)
    return None if out is None else str(out)


def reward(instance: Any) -> float | None:
    """`instance.get_reward()` as a float, or None where the class has no `get_reward`."""
    fn = getattr(instance, "get_reward", None)
    return None if fn is None else float(fn())


def env_spec(
    cfg: Any, factory: Callable[[], Any] | None = None, tools: Sequence[Callable[..., Any]] = ()
) -> EnvSpec | None:
    """The run's environment from its `[env]` section (`dashrl.config.env.EnvConfig`: a class and
    tools by path, or a shipped name) and objects given in Python (`dashrl.train(environment_factory=,
    tools=)`), checked; None when there is none. Given objects come after (tools) or instead of
    (a class) the section's."""
    if factory is not None and cfg.factory_spec:
        raise EnvError(f"environment_factory given and [env] names {cfg.factory_spec!r}: give one")
    if factory is not None:
        check_factory(factory)
    elif cfg.factory_spec:
        factory = load_factory(cfg.factory_spec)
    for fn in tools:
        make_tool(fn)
    all_tools = (*load_tools(cfg.tool_specs), *tools)
    if factory is None and not all_tools:
        return None
    tool_table(spec_tools(factory() if factory is not None else None, all_tools))  # names unique
    return EnvSpec(factory, tuple(all_tools))


def check_rows(spec: EnvSpec | None, row: dict[str, Any]) -> None:
    """Fail in one line when `reset` needs a key the task's rows lack (`row`: the first one's,
    `dashrl.env.rollout.example_row`), before any model loads.

    >>> class Env:
    ...     def reset(self, question, level=1): pass
    >>> check_rows(EnvSpec(Env), {"q": "2+2?"})
    Traceback (most recent call last):
    ...
    dashrl.env.tools.EnvError: environment Env: reset needs 'question', which the task's rows lack (they have q)
    """
    if spec is None or spec.factory is None:
        return
    params = inspect.signature(spec.factory().reset).parameters.values()
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    missing = [p.name for p in params if p.kind in plain and p.default is p.empty and p.name not in row
               and p.name != "seed"]  # fmt: skip
    if missing:
        need = ", ".join(repr(m) for m in missing)
        raise EnvError(
            f"environment {spec.name}: reset needs {need}, which the task's rows lack (they have {', '.join(row)})"
        )
