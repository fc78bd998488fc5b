"""The `[env]` section: a multi-turn environment and tools (docs/environments.md). Checked here
without importing anything of the user's (`dashrl.runtime.user_code.check`); the class and the
tools are imported and checked before any model loads (`dashrl.train.preflight`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dashrl.config.errors import ConfigError, _at_least, _check, _suggest


@dataclass(frozen=True)
class EnvConfig:
    factory: str = ""
    """An environment class in TRL's convention, `path/to/file.py:Class` or `module:Class`: `reset(**row)`,
    public methods with type hints and a docstring as tools, optionally `get_reward()` and
    `env_response(messages)`. One instance per rollout. Empty = none."""
    tools: str = ""
    """Comma-separated tool functions (type hints and a docstring each), `path/to/file.py:fn` or
    `module:fn`; `dashrl.tools:python` runs the model's code in the sandbox."""
    name: str = ""
    """A shipped environment by name (`dashrl.env.registry.ENVIRONMENTS`; an unknown name lists them),
    instead of `factory`."""
    max_turns: int = 4
    """Model turns per trajectory; a tool call in the last one ends the trajectory (`env/finish/max_turns`)."""
    max_tool_calls: int = 8
    """Tool calls per trajectory; a turn that would pass it ends the trajectory."""
    max_tokens: int = 512
    """Tokens per trajectory after the prompt, the model's and the environment's together."""
    tool_timeout: float = 10.0
    """Seconds a tool call may take; past it the model reads a timeout error as the answer."""

    def __post_init__(self) -> None:
        from dashrl.env.registry import ENVIRONMENTS

        _check(not (self.name and self.factory), "env.name", "give env.name or env.factory, not both")
        if self.name and self.name not in ENVIRONMENTS:
            raise ConfigError(f"config env.name: unknown environment {self.name!r}{_suggest(self.name, ENVIRONMENTS)}")
        if self.factory:
            object.__setattr__(self, "factory", _user_path(self.factory, "env.factory"))
        if self.tools.strip():
            specs = [s.strip() for s in self.tools.split(",")]
            _check(all(specs), "env.tools", f"expected comma-separated path:function entries, got {self.tools!r}")
            object.__setattr__(self, "tools", ",".join(_user_path(s, "env.tools") for s in specs))
        _at_least("env.max_turns", self.max_turns, 1)
        _at_least("env.max_tool_calls", self.max_tool_calls, 0)
        _at_least("env.max_tokens", self.max_tokens, 1)
        _check(self.tool_timeout > 0, "env.tool_timeout", f"expected > 0, got {self.tool_timeout}")

    @property
    def enabled(self) -> bool:
        return bool(self.factory or self.name or self.tools)

    @property
    def tool_specs(self) -> list[str]:
        return [s for s in self.tools.split(",") if s]

    @property
    def factory_spec(self) -> str:
        """The class to load: `factory`, or the shipped environment `name` names."""
        from dashrl.env.registry import ENVIRONMENTS

        return self.factory or ENVIRONMENTS.get(self.name, "")


def _user_path(spec: str, key: str) -> str:
    """`spec` checked without running it, a file made absolute (sampler processes elsewhere find it)."""
    from dashrl.runtime.user_code import UserCodeError, check, split

    try:
        check(spec, key)
    except UserCodeError as e:
        raise ConfigError(f"config {e}") from None
    target, name, is_file = split(spec)
    return f"{Path(target).expanduser().resolve()}:{name}" if is_file else spec.strip()
