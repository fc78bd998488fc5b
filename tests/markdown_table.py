"""The markdown tables that benchmarks print, read back as cells, so that a test compares each
figure with the value it computes from the formula rather than with a string pasted from a run."""

from __future__ import annotations


def read_table(md: str) -> dict[str, dict[str, str]]:
    """Row name (first column) -> {column header: cell} for the first table in `md`.

    >>> read_table("| a | b |\\n|---|---|\\n| x | 1.5x |")
    {'x': {'a': 'x', 'b': '1.5x'}}
    """
    lines = [line for line in md.splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(head), f"{len(cells)} cells under {len(head)} headers: {line}"
        rows[cells[0]] = dict(zip(head, cells))
    return rows


def shows(cell: str, value: float) -> bool:
    """Whether `cell` is `value` printed at the cell's own precision: within half its last digit
    (a percentage cell shows 100 x `value`; a trailing `x` marks a ratio).

    >>> shows("2.50x", 2.5), shows("12.5%", 0.125), shows("0.312", 0.3125), shows("0.312", 0.32)
    (True, True, True, False)
    """
    text = cell.removesuffix("x").removesuffix("%")
    decimals = len(text.partition(".")[2])
    scale = 100 if cell.endswith("%") else 1
    return abs(float(text) - value * scale) <= 0.5 * 10**-decimals * (1 + 1e-9)
