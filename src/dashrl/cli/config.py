"""`dashrl config`: every config field with its type, default and docstring, and the shipped run files.

    dashrl config                 # every section and field
    dashrl config --show train    # one section
    dashrl config --files         # the TOML run files installed with dashrl (for --config NAME)
    dashrl config --toml          # the defaults as a TOML run file to start from

The listing is read from the dataclasses of `dashrl.config` (their field docstrings are the only
help text), so it cannot drift from what `--section.field` accepts. Imports only the standard library.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--show", nargs="?", const="", default="", metavar="SECTION",
                   help="print the fields of SECTION (default: every section) with type, default and doc")  # fmt: skip
    p.add_argument("--files", action="store_true", help="list the run files shipped with dashrl (use as --config NAME)")
    p.add_argument("--toml", action="store_true", help="print the default config as TOML")


def _first_comment(path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def run(args: argparse.Namespace) -> int:
    from dashrl.config import Config, ConfigError, describe_fields, shipped_configs, to_toml

    if args.files:
        for name, path in shipped_configs().items():
            print(f"{name:15} {_first_comment(path)}\n{'':15} {path}")
        return 0
    if args.toml:
        print(to_toml(Config()), end="")
        return 0
    try:
        print(describe_fields(args.show or None))
    except ConfigError as e:
        print(f"dashrl: {e}", file=sys.stderr)
        return 2
    return 0
