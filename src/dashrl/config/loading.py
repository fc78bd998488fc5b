"""Loading a config: defaults, then a TOML file, then `--section.field VALUE` overrides, each
key checked (with the closest valid name) and each value coerced to its field's type; and
writing one back as TOML."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence, get_type_hints

from dashrl.config.errors import ConfigError, _suggest
from dashrl.config.schema import Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _section_types() -> dict[str, type]:
    hints = get_type_hints(Config)
    return {f.name: hints[f.name] for f in fields(Config)}


def _coerce(key: str, value: Any, typ: Any) -> Any:
    """Turn a TOML or command-line value into the field's type, or raise ConfigError."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
    elif typ is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif typ is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config {key}: expected {typ.__name__}, got {value!r}")


def _home_sections(key: str, types: dict[str, type]) -> list[str]:
    """Sections that have a field named `key` (for 'it lives in another section' hints)."""
    return [sec for sec, cls in types.items() if key in get_type_hints(cls)]


def _unknown_key(sec: str, key: str, types: dict[str, type]) -> ConfigError:
    homes = _home_sections(key, types)
    if homes:
        where = " or ".join(f"'{h}.{key}'" for h in homes)
        return ConfigError(f"config: unknown key '{sec}.{key}'; did you mean {where}? ({key} belongs to [{homes[0]}])")
    every = {f"{s}.{k}" for s, cls in types.items() for k in get_type_hints(cls)}
    local = list(get_type_hints(types[sec]))
    close = difflib.get_close_matches(key, local, n=1, cutoff=0.5)
    if close:
        return ConfigError(f"config: unknown key '{sec}.{key}'; did you mean '{close[0]}'?")
    return ConfigError(f"config: unknown key '{sec}.{key}'{_suggest(f'{sec}.{key}', sorted(every))}")


def _unknown_section(sec: str, values: Any, types: dict[str, type]) -> ConfigError:
    homes = _home_sections(sec, types)
    if homes:  # a field written at the top level of a TOML file, or --steps style
        return ConfigError(
            f"config: {sec!r} is not a section; did you mean '{homes[0]}.{sec}'? "
            f"(in TOML put it under [{homes[0]}]; on the command line write --{homes[0]}.{sec})"
        )
    return ConfigError(f"config: unknown section {sec!r}{_suggest(sec, list(types))} (sections: {', '.join(types)})")


def check_keys(data: dict[str, Any]) -> None:
    """Fail on unknown sections or keys and on values of the wrong type, without building.

    >>> try:
    ...     check_keys({"train": {"stesp": 3}})
    ... except ConfigError as e:
    ...     print(e)
    config: unknown key 'train.stesp'; did you mean 'steps'?
    """
    types = _section_types()
    for sec, values in data.items():
        if sec not in types:
            raise _unknown_section(sec, values, types)
        if not isinstance(values, dict):
            raise ConfigError(f"config {sec}: expected a table of fields, got {values!r}")
        hints = get_type_hints(types[sec])
        for key, val in values.items():
            if key not in hints:
                raise _unknown_key(sec, key, types)
            _coerce(f"{sec}.{key}", val, hints[key])


def build_config(data: dict[str, Any]) -> Config:
    """Build a validated Config from nested `{section: {field: value}}` data.

    >>> build_config({"algo": {"group_size": 4}}).algo.group_size
    4
    """
    check_keys(data)
    types = _section_types()
    sections: dict[str, Any] = {}
    for sec, values in data.items():
        cls = types[sec]
        hints = get_type_hints(cls)
        sections[sec] = cls(**{key: _coerce(f"{sec}.{key}", val, hints[key]) for key, val in values.items()})
    return Config(**sections)


def parse_overrides(args: Sequence[str]) -> dict[str, dict[str, str]]:
    """`["--algo.group_size", "4", "--run.quiet=true"]` -> `{"algo": {"group_size": "4"}, ...}`."""
    out: dict[str, dict[str, str]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg:
            homes = _home_sections(arg.lstrip("-").partition("=")[0], _section_types())
            hint = f"; did you mean --{homes[0]}.{arg.lstrip('-')}?" if homes else ""
            raise ConfigError(f"expected --section.field VALUE, got {arg!r}{hint}")
        key, eq, val = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key} needs a value")
            val = args[i + 1]
            i += 1
        sec, _, name = key.partition(".")
        out.setdefault(sec, {})[name] = val
        i += 1
    return out


# -- shipped run files and the field listing ----------------------------------------------
CONFIGS = Path(__file__).parent.parent / "configs"  # TOML run files installed with the package


def shipped_configs() -> dict[str, Path]:
    """The run files installed with dashrl, by name (`quickstart`, `gsm8k`, ...)."""
    return {p.stem: p for p in sorted(CONFIGS.glob("*.toml"))}


def find_config(name: str | os.PathLike) -> Path:
    """A `--config` value as a file: an existing path, else a shipped run file by name.

    `gsm8k`, `gsm8k.toml` and `configs/gsm8k.toml` all find the shipped file when no such
    path exists here, so the README's commands work from any folder.

    >>> find_config("quickstart").name
    'quickstart.toml'
    """
    p = Path(name)
    if p.is_file():
        return p
    shipped = shipped_configs()
    stem = p.name[: -len(".toml")] if p.name.endswith(".toml") else p.name
    if stem in shipped and (p.parent == Path(".") or p.parent.name == "configs"):
        return shipped[stem]
    raise ConfigError(
        f"config file not found: {p} (shipped run files: {', '.join(shipped)}; `dashrl config --files` lists them)"
    )


def load_config(
    path: str | os.PathLike | None = None, overrides: Sequence[str] = (), base: dict[str, dict[str, Any]] | None = None
) -> Config:
    """Defaults <- `base` (a command's own defaults) <- TOML file <- `--section.field VALUE`
    overrides, validated.

    `path` is a TOML file or the name of a shipped run file (`find_config`).

    >>> load_config(overrides=["--train.steps", "3"]).train.steps
    3
    """
    data: dict[str, dict[str, Any]] = {sec: dict(vals) for sec, vals in (base or {}).items()}
    if path is not None:
        p = find_config(path)
        try:
            from_file = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: invalid TOML: {e}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p}: cannot read it ({e})") from None
        try:
            check_keys(from_file)
        except ConfigError as e:  # name the file: the bad key is in it, not on the command line
            raise ConfigError(f"{p}: {e}") from None
        for sec, vals in from_file.items():
            data.setdefault(sec, {}).update(vals)
    for sec, vals in parse_overrides(overrides).items():
        data.setdefault(sec, {}).update(vals)
    # Values the file resolved (beta, loss) are re-resolved from the schedule when absent.
    return build_config(data)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return f'"{s}"'


ALIASES = {"algo.schedule": "algo.name"}  # former field names, still read


def to_toml(cfg: Config) -> str:
    """The resolved config as TOML text (round-trips through `load_config`)."""
    lines = []
    for sec in fields(cfg):
        lines.append(f"[{sec.name}]")
        for f in fields(getattr(cfg, sec.name)):
            if f"{sec.name}.{f.name}" in ALIASES:  # the name it resolved to is written instead
                continue
            lines.append(f"{f.name} = {_toml_value(getattr(getattr(cfg, sec.name), f.name))}")
        lines.append("")
    return "\n".join(lines)


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)
