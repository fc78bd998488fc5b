"""The `[select]` section: which prompts a step samples, chosen before sampling (`dashrl.select`).
The names come from `dashrl.select.registry` (standard library only), so this loads without torch."""

from __future__ import annotations

from dataclasses import dataclass

from dashrl.config.errors import ConfigError, _at_least, _check, _choice


@dataclass(frozen=True)
class SelectConfig:
    name: str = "uniform"
    """Prompt selector: `uniform` (the task's own order, no selection), `greso` (skip prompts whose
    last visits were all right or all wrong, with a probability that grows with the run; GRESO), or
    your own class as `path/to/file.py:Class` or `module:Class` (docs/algorithms.md, "Filtering
    before sampling"); a file is stored as its absolute path."""
    p_easy: float = 0.5
    """greso: the starting p of prompts whose groups were all right: after k such visits in a row a
    prompt is skipped with probability 1 - max(p^k, keep_floor)."""
    p_hard: float = 0.5
    """greso: the starting p of prompts whose groups were all wrong."""
    target: float = 0.25
    """greso: the share of zero-variance groups p steers towards, a third of it easy, two thirds hard."""
    p_step: float = 0.01
    """greso: how far p moves after each step from the second epoch on (down while the share of easy
    (hard) groups is at or above its target, up otherwise)."""
    p_lo: float = 0.05
    """greso: the lowest p."""
    p_hi: float = 0.95
    """greso: the highest p."""
    keep_floor: float = 0.01
    """greso: the least probability that a prompt with a long run is kept."""
    margin: float = 1.25
    """greso with dynamic sampling: the first round samples M / (last step's informative share) x this."""

    def __post_init__(self) -> None:
        from dashrl.select.registry import SELECTOR_PATHS, SELECTORS

        if ":" in self.name:
            from pathlib import Path

            from dashrl.runtime.user_code import UserCodeError, check, split

            try:
                check(self.name, "select.name")
            except UserCodeError as e:
                raise ConfigError(str(e)) from None
            target, name, is_file = split(self.name)
            if is_file:  # absolute, so that a resumed run or another process finds it
                object.__setattr__(self, "name", f"{Path(target).expanduser().resolve()}:{name}")
        else:
            _choice("select.name", self.name, (*SELECTORS, *SELECTOR_PATHS))
        for key in ("p_easy", "p_hard", "p_lo", "p_hi"):
            value = getattr(self, key)
            _check(0 < value < 1, f"select.{key}", f"expected a probability in (0, 1), got {value}")
        _check(self.p_lo <= self.p_hi, "select.p_lo", f"expected <= select.p_hi ({self.p_hi}), got {self.p_lo}")
        _check(0 <= self.target <= 1, "select.target", f"expected in [0, 1], got {self.target}")
        _at_least("select.p_step", self.p_step, 0)
        _check(0 <= self.keep_floor < 1, "select.keep_floor", f"expected in [0, 1), got {self.keep_floor}")
        _at_least("select.margin", self.margin, 1)


def check_select(select: SelectConfig, supervised: bool, overlap: int) -> None:
    """What a selector needs of the other sections: prompts it sees the rewards of before it picks
    again (not sft's records, not batches drawn ahead by `dist.overlap`)."""
    if select.name == "uniform":
        return
    _check(not supervised, "select.name", "sft trains on records in order; selection is for the RL algorithms")
    _check(overlap == 0, "select.name", "a selector picks from the last step's rewards; it needs --dist.overlap 0")
