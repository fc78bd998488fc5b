"""Every figure of the README's headline table is in the committed raw file of the run it quotes
(docs/bench-cpu/bench.json, `dashrl bench --workload wordproblems`): the seconds per sample, the
ratios per sample and per sampled token, and the mean reward, each recomputed from that file's rows."""

from __future__ import annotations

import json
from pathlib import Path

from markdown_table import read_table, shows

ROOT = Path(__file__).resolve().parents[2]
ARMS = {  # README row -> the bench's variant
    "GRPO (the paper's baseline, as TRL 0.16 ran it)": "grpo",
    "DASH without filtering": "dash_nogf",
    "DASH": "dash",
    "TRL 1.16 `GRPOTrainer`": "trl",
}


def headline() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("| variant | s/sample |")
    return text[start : text.index("\n\n", start)]


def test_every_headline_figure_is_in_the_committed_raw_file():
    rows = read_table(headline())
    raw = json.loads((ROOT / "docs" / "bench-cpu" / "bench.json").read_text())
    results = raw["results"]
    per_ktok = {  # step seconds per thousand sampled tokens, from every step's row
        v: 1000 * sum(r["time/step_s"] for r in steps) / sum(r["gen/sampled_tokens"] for r in steps)
        for v, steps in raw["rows"].items()
    }
    assert set(rows) == set(ARMS)
    for name, variant in ARMS.items():
        r, cells = results[variant], rows[name]
        assert shows(cells["s/sample"], r["s_per_sample"]), (name, cells["s/sample"])
        assert shows(cells["vs GRPO"], results["grpo"]["s_per_sample"] / r["s_per_sample"]), name
        assert shows(cells["vs TRL 1.16"], results["trl"]["s_per_sample"] / r["s_per_sample"]), name
        assert shows(cells["per token vs GRPO"], per_ktok["grpo"] / per_ktok[variant]), name
        assert shows(cells["per token vs TRL"], per_ktok["trl"] / per_ktok[variant]), name
        assert shows(cells["mean reward over 6 steps"], r["reward_mean"]), name
        assert r["steps"] == 6
