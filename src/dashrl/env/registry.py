"""The shipped environments by name (`--env.name NAME`), as `module:Class` paths: standard library
only, so the config checks a name without importing the environment."""

from __future__ import annotations

ENVIRONMENTS: dict[str, str] = {
    "calculator": "dashrl.env.calculator:Calculator",
}
