"""docs/lora.md's table of LoRA against full fine-tuning on today's defaults is its committed raw files:
each row's rewards, step and optimizer seconds recomputed from the run's `metrics.jsonl`, its peak
memory from the run's `/usr/bin/time -v` output, its lr and seed from the run's `config.toml`."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from markdown_table import shows

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
RAW = ROOT / "docs" / "results" / "lora"
HEADER = "| run | lr | seed | reward first 5 | reward last 5 | reward all 30 | peak RSS | median step s |"


def folder(run: str, lr: str, seed: str) -> Path:
    """The raw folder of a row: full-seedS, lora-seedS (LoRA's default lr 3e-4) or lora-seedS-lrLR."""
    if run == "full fine-tuning":
        return RAW / f"full-seed{seed}"
    return RAW / (f"lora-seed{seed}" if lr == "3e-4" else f"lora-seed{seed}-lr{lr}")


def test_the_lora_table_is_its_raw_files():
    text = (ROOT / "docs" / "lora.md").read_text()
    start = text.index(HEADER)
    lines = text[start : text.index("\n\n", start)].splitlines()[2:]
    assert len(lines) == 6  # full fine-tuning and LoRA's three learning rates on seed 0; both at the defaults on seed 1
    for line in lines:
        run, lr, seed, first, last, every, rss, step, opt = (c.strip().strip("*") for c in line.strip("|").split("|"))
        here = folder(run, lr, seed)
        rows = [json.loads(x) for x in (here / "metrics.jsonl").read_text().splitlines()]
        reward = [r["reward/mean"] for r in rows]
        assert len(reward) == 30, here
        assert shows(first, statistics.fmean(reward[:5])) and shows(last, statistics.fmean(reward[-5:])), here
        assert shows(every, statistics.fmean(reward)), here
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", (here / "time.txt").read_text())[1])
        assert shows(rss.removesuffix(" GiB"), kb / 2**20), here
        assert shows(step, statistics.median(r["time/step_s"] for r in rows)), here
        assert shows(opt, statistics.median(r["time/optimizer_s"] for r in rows)), here
        cfg = tomllib.loads((here / "config.toml").read_text())
        assert cfg["train"]["seed"] == int(seed) and cfg["train"]["lr"] == float(lr), here
        assert (cfg["lora"]["r"] > 0) == (run != "full fine-tuning") and cfg["model"]["dtype"] == "fp32", here
