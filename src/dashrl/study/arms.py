"""The study's arms: one registry (`ARMS`), each arm an ordinary `dashrl train` run folder.

Which arm is which (the paper's names against dashrl's flags):

| arm | the paper's | dashrl |
|---|---|---|
| `base` | the base model | no training, evaluated as it is |
| `dash` | DASH (keeps the KL term) | `--algo.name dash --algo.beta <preset.dash_beta>` |
| `dash_nokl` | No-KL | `--algo.name dash --algo.beta 0` (dashrl's `dash` default) |
| `nogf` | No-GF (DASH without gradient filtering) | `dash`, same beta, `--algo.filter_threshold -1` |
| `grpo` | GRPO (standard implementation) | `--algo.name grpo` (beta 0.04, no filter) |
| `ppo_multi` | PPO-Multi (K passes over all M x G samples) | `--algo.name ppo_multi --algo.ppo_k 3`, DASH's beta |
| `ppo_mini` | PPO-Mini (K mini-batches of M / K prompts) | `--algo.name ppo_mini --algo.ppo_k <K>`, DASH's beta |
| `sft_h` | SFT-H (human-written solutions) | `--algo.name sft --sft.data human` |
| `sft_m` | SFT-M (a stronger model's correct traces) | `--algo.name sft --sft.data <traces.jsonl>` |
| `dapo`, `gspo`, ... | - | every other algorithm of `dashrl.algo.registry` with its own defaults; run only when `--arms` names it |

Every arm of one seed shares the model, task, prompts (the task stream of `train.seed`)
and sampling seeds. The PPO arms save a checkpoint at every sampling cycle (bf16
weights, 0.27 GB each for 135M) so that they can also be read at DASH's wall-clock;
the study deletes the ones it does not need once the cut is known. A finished arm (its
last checkpoint at `train.steps` and its `summary.md` written) is skipped; an
interrupted one continues from its newest checkpoint (`dashrl.train.loop`'s resume,
bit-exact on one CPU process).
"""  # noqa: E501 (a markdown table row above cannot be wrapped)

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dashrl.algo.registry import ALGORITHMS
from dashrl.study.presets import Preset, Sections, merge

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import Config


@dataclass(frozen=True)
class Arm:
    name: str  # run-folder prefix and table key
    label: str  # the paper's name
    kind: str  # "eval" (base), "rl" or "sft"
    fields: Callable[[Preset, str], Sections]  # (preset, SFT data) -> the arm's own config fields
    default: bool = True  # runs in a study without --arms (the paper's arms); the others only when named


def _dash(beta_of: Callable[[Preset], float], **algo: Any) -> Callable[[Preset, str], Sections]:
    return lambda p, data: {"algo": {"name": "dash", "beta": beta_of(p), **algo}}


def _ppo(schedule: str, k_of: Callable[[Preset], int]) -> Callable[[Preset, str], Sections]:
    # every cycle saved (bf16 weights) so the run can be read at DASH's wall-clock
    return lambda p, data: {
        "algo": {"name": schedule, "ppo_k": k_of(p), "beta": p.dash_beta},
        "run": {"save_every": k_of(p), "keep_last": 0, "save_dtype": "bf16"},
    }


def _sft(p: Preset, data: str) -> Sections:
    return {"algo": {"name": "sft"}, "sft": {"data": data}}


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("base", "Base model", "eval", lambda p, data: {}),
        Arm("dash", "DASH (with KL)", "rl", _dash(lambda p: p.dash_beta)),
        Arm("dash_nokl", "No-KL (DASH, beta 0)", "rl", _dash(lambda p: 0.0)),
        Arm("nogf", "No-GF (DASH without filtering)", "rl", _dash(lambda p: p.dash_beta, filter_threshold=-1.0)),
        Arm("grpo", "GRPO", "rl", lambda p, data: {"algo": {"name": "grpo"}}),
        Arm("ppo_multi", "PPO-Multi", "rl", _ppo("ppo_multi", lambda p: p.ppo_multi_k)),
        Arm("ppo_mini", "PPO-Mini", "rl", _ppo("ppo_mini", lambda p: p.ppo_mini_k)),
        Arm("sft_h", "SFT-H", "sft", _sft),
        Arm("sft_m", "SFT-M", "sft", _sft),
    )
}
# Every other algorithm of the registry (dapo, gspo, ...) as an opt-in arm: `--arms dash,dapo`.
ARMS.update(
    {
        a.name: Arm(a.name, a.name, "rl", lambda p, data, name=a.name: {"algo": {"name": name}}, default=False)
        for a in ALGORITHMS.values()
        if a.name not in ARMS and not a.supervised
    }
)
TEACHER_ARM = "dash"  # SFT-M distils the paper's DASH unless --teacher is given
# Fields the arms set themselves: a study-wide override of one would change what an arm is.
STUDY_RUN_FIELDS = ("quiet", "loggers", "save_every", "keep_last")  # run.* a study may set for every arm
ARM_FIELDS = (
    "algo.name",
    "algo.schedule",
    "algo.beta",
    "algo.filter_threshold",
    "algo.ppo_k",
    "train.seed",
    "sft.data",
)


def check_overrides(overrides: Sections) -> None:
    """Refuse study-wide overrides of the fields that define the arms, and of run.*.

    >>> check_overrides({"model": {"name": "x"}})
    >>> check_overrides({"algo": {"beta": "0.1"}})
    Traceback (most recent call last):
    ValueError: --algo.beta is set by each arm (the arms differ in it); the study cannot override it
    """
    for sec, vals in overrides.items():
        for key in vals:
            name = f"{sec}.{key}"
            if name in ARM_FIELDS:
                raise ValueError(f"--{name} is set by each arm (the arms differ in it); the study cannot override it")
            if sec == "run" and key not in STUDY_RUN_FIELDS:
                raise ValueError(
                    f"--{name}: the study names and places the run folders itself (use --out DIR); "
                    f"it takes --run.{', --run.'.join(STUDY_RUN_FIELDS)}"
                )


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def arm_config(
    arm: Arm, preset: Preset, overrides: Sections, runs_dir: Path, seed: int, sft_data: str = "human"
) -> "Config":
    """The validated run config of `arm` at seed `seed`: preset <- study-wide overrides <-
    the arm's own fields <- its run folder and seed. Raises `ConfigError` (e.g. when this
    dashrl has no `sft` schedule yet)."""
    from dashrl.config import build_config

    base_seed = int(merge(preset.config, overrides).get("train", {}).get("seed", 0))
    own = {"run": {"out_dir": str(runs_dir), "name": run_name(arm.name, seed)}, "train": {"seed": base_seed + seed}}
    return build_config(merge(preset.config, overrides, arm.fields(preset, sft_data), own))


def status(cfg: "Config") -> str:
    """`new`, `partial` (a checkpoint to continue from) or `done` (finished: skip it).

    Raises `RunError` when the folder holds a run of another config.
    """
    from dashrl.train.loop import find_resume_point
    from dashrl.train.preflight import run_complete

    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    ckpt = find_resume_point(cfg, run_dir, None)
    if ckpt is None:
        return "new"
    return "done" if run_complete(cfg, run_dir, ckpt) else "partial"


def final_checkpoint(run_dir: Path) -> Path | None:
    from dashrl.train.checkpoint import latest_checkpoint

    return latest_checkpoint(run_dir, resumable=False)


def keep_only(run_dir: Path, keep: set[Path]) -> list[Path]:
    """Delete the run's whole checkpoints other than `keep` (info file first, so a crash
    mid-delete leaves a folder that no longer counts as a checkpoint); the newest stays."""
    from dashrl.train.checkpoint import INFO_FILE, list_checkpoints

    whole = list_checkpoints(run_dir)
    removed = []
    for ckpt in whole[:-1]:
        if ckpt not in keep:
            (ckpt / INFO_FILE).unlink(missing_ok=True)
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append(ckpt)
    return removed
