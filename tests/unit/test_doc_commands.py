"""Commands the docs show reproduce their figures (issue 36): the README's time-to-reward command is
the one its figure's table was made with, and every `--dist.overlap` shown carries the loss that
overlap requires, so that it passes the config's check as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_time_to_reward_command_is_its_tables():
    readme = (ROOT / "README.md").read_text()
    (shown,) = re.findall(r"`(dashrl bench --ttr [^`]+)`\s+reproduces it", readme)
    short = (ROOT / "docs" / "performance-short.md").read_text()
    table = short.index("| TRL 1.16 | 3 of 3 |")  # the 3-repeat figure the README quotes
    made_with = re.findall(r"```bash\n(dashrl bench --ttr[^\n]*)\n```", short[:table])[-1]
    assert shlex.split(shown) == shlex.split(made_with)
    assert "--repeats" in shown and "--level" in shown and "--window" in shown
    assert "--trl-batches" not in shown  # the figure is against TRL's fastest probed batch


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_overlap_shown_carries_a_loss_that_passes_the_config(doc):
    from dashrl.config import load_config

    for span in re.findall(r"`([^`\n]*--dist\.overlap [0-9][^`\n]*)`", doc.read_text()):
        flags = shlex.split(span.removeprefix("dashrl train "))
        assert "--algo.loss" in flags, f"{doc.name}: `{span}` shows overlap without the loss it requires"
        load_config(None, ["--dist.samplers", "1", *flags])  # raises where the config refuses it
