"""Commands the docs show reproduce their figures (issue 36): the README's time-to-reward command is
the one its figure's table was made with, and every `--dist.overlap` shown carries the loss that
overlap requires, so that it passes the config's check as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _bash_commands(text: str, prefix: str) -> list[str]:
    """The commands starting with `prefix` in `text`'s bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    lines = [line.strip() for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line.startswith(prefix)]


def test_the_readme_time_to_reward_command_is_its_tables():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| run | time to a rolling reward of 0.6")
    (shown,) = _bash_commands(readme[start:], "dashrl bench --ttr")  # the one after the README's table
    short = (ROOT / "docs" / "performance-short.md").read_text()
    table = short.index("| TRL 1.16, batch 8 + static KV cache | 3 of 3 |")  # the figure the README quotes
    made_with = _bash_commands(short[:table], "dashrl bench --ttr")[-1]
    assert shlex.split(shown) == shlex.split(made_with)
    flags = shlex.split(shown)
    value = {f: flags[flags.index(f) + 1] for f in flags if f.startswith("--") and f != "--ttr"}
    raw = json.loads((ROOT / "docs" / "results" / "ttr" / "ttr.json").read_text())
    assert int(value["--repeats"]) == len(raw["repeats"]["trl"]) == len(raw["repeats"]["dashrl"]) == 3
    assert value["--trl-options"] == raw["trl_option"] and int(value["--trl-batches"]) == raw["trl_batch"]
    assert f"level {value['--level']} " in raw["workload"] and f"over {value['--window']} steps" in raw["workload"]
    assert value["--tuned"] in raw["workload"] and (ROOT / value["--tuned"]).is_file()
    assert raw["dashrl_flags"][: len(raw["flags"])] == raw["flags"] and "--train.pass_tokens" in raw["dashrl_flags"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_overlap_shown_carries_a_loss_that_passes_the_config(doc):
    from dashrl.config import load_config

    for span in re.findall(r"`([^`\n]*--dist\.overlap [0-9][^`\n]*)`", doc.read_text()):
        flags = shlex.split(span.removeprefix("dashrl train "))
        assert "--algo.loss" in flags, f"{doc.name}: `{span}` shows overlap without the loss it requires"
        load_config(None, ["--dist.samplers", "1", *flags])  # raises where the config refuses it
