"""Study presets: typed data, one registry (`PRESETS`), and the `--quick` shrink (`QUICK`).

A preset fixes what every arm shares (model, task, sampler, M, G, lr, steps: the
config sections) and how the one evaluator reads the final models (which sets, how
many problems, pass@k's n and temperature). `--quick` replaces the sizes with tiny
ones so that every arm runs in minutes (a smoke run, not a measurement).

- `cpu` (the default): SmolLM2-135M-Instruct on one-step word problems (`wordproblems`,
  difficulty 1), chosen by measurement (docs/study.md): the base model solves 36% of
  held-out one-step problems greedily (10% sampled at T = 0.7), inside the 15-60% band the
  study asks for (room to improve, and a signal); two steps give 6%, GSM8K 2%, so those
  leave nothing to compare. The task ships worked solutions (SFT-H) and three
  out-of-distribution sets (more steps, ten times larger numbers, multiplication events).
  Accuracy is greedy accuracy (one decode per problem, no sampling noise); pass@k samples
  n = 8 at the training temperature. Completions are capped at 128 tokens in training and
  in the evaluation (the base model's greedy answers average 73 tokens; a one-step worked
  solution is ~30), and each set is read on its first 50 problems, to fit eight training
  arms and eleven evaluations into about three hours on two CPU cores (docs/study.md
  "Reproducing the paper" gives the measured times).
- `paper`: the authors' settings for a GPU (their scripts in shuoli90/efficient_reasoning,
  read, not copied): Qwen2.5-0.5B (the base model, not Instruct), MATH train, G = 4,
  256 completions per step (2 GPUs x 4 per device x 32 accumulation = M 64 x G 4),
  lr 3e-6, 2048 completion tokens, gradient-filter threshold 0.01, seed 42, KL beta 0.04
  (TRL 0.16's default, which their GRPO scripts keep), evaluation on MATH-500 with
  GSM8K, AIME24, AMC23, Minerva and OlympiadBench out of distribution at temperature
  0.6. Their scripts leave the number of epochs at TRL's default (3): 3 x 12,000 / 64 =
  562 steps. Documented, not run here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

Sections = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Preset:
    """What every arm of a study shares, and how the final models are read."""

    name: str
    summary: str
    config: Sections  # config sections every arm starts from (arms add their own fields)
    eval_sets: tuple[str, ...]  # the first is in distribution, the rest out of it
    eval_limit: int = 100  # problems per set, greedy (accuracy, lengths)
    eval_max_new_tokens: int = 256
    passk_n: int = 8  # samples per problem for pass@k on the in-distribution set
    passk_limit: int = 50  # its first N problems
    passk_temperature: float = 0.7
    passk_top_p: float = 1.0
    dash_beta: float = 0.04  # the paper's DASH keeps the KL term; "No-KL" sets it to 0
    ppo_multi_k: int = 3
    ppo_mini_k: int = 2  # mini-batches of M / K prompts (must divide M)
    distill_problems: int = 200  # SFT-M: problems the teacher solves ...
    distill_n: int = 4  # ... with n samples each, keeping the correct ones
    distill_k: int = 1  # ... at most k per problem
    run_here: bool = True  # False: documented for a GPU user, too big for this machine
    notes: tuple[str, ...] = field(default=())

    @property
    def id_set(self) -> str:
        return self.eval_sets[0]

    @property
    def pass_ks(self) -> list[int]:
        """k = 1, 2, 4, ... up to n (n itself included).

        >>> PRESETS["cpu"].pass_ks
        [1, 2, 4, 8]
        """
        ks, k = [], 1
        while k < self.passk_n:
            ks.append(k)
            k *= 2
        return ks + [self.passk_n]


CPU = Preset(
    name="cpu",
    summary="SmolLM2-135M, one-step word problems, 2 CPU cores, ~3 h (estimated)",
    config={
        "model": {"name": "smollm2-135m"},
        "task": {"name": "wordproblems", "difficulty": 1},
        "sampler": {"batch_size": 64, "max_new_tokens": 128, "temperature": 0.7},
        "algo": {"prompts_per_step": 8, "group_size": 8},
        "train": {"steps": 20, "lr": 2e-5, "micro_batch_size": 8, "warmup_steps": 2},
        "run": {"quiet": True},
    },
    eval_sets=("wordproblems", "wordproblems_long", "wordproblems_big", "wordproblems_mul"),
    eval_limit=50,
    eval_max_new_tokens=128,
)

PAPER = Preset(
    name="paper",
    summary="the authors' settings: Qwen2.5-0.5B, MATH, MATH-500 + OOD (GPU)",
    config={
        "model": {"name": "Qwen/Qwen2.5-0.5B"},
        "task": {"name": "math"},
        "sampler": {"batch_size": 256, "max_new_tokens": 2048, "temperature": 1.0},
        "algo": {"prompts_per_step": 64, "group_size": 4, "filter_threshold": 0.01},
        "train": {"steps": 562, "lr": 3e-6, "micro_batch_size": 8, "seed": 42},
        "run": {"quiet": True},
    },
    eval_sets=("math500", "gsm8k", "aime24", "amc23", "minerva", "olympiadbench"),
    eval_limit=0,
    eval_max_new_tokens=2048,
    passk_n=8,
    passk_limit=0,
    passk_temperature=0.6,
    passk_top_p=0.95,
    ppo_mini_k=4,
    distill_problems=12000,
    distill_n=8,
    run_here=False,
    notes=("SFT-M's teacher: pass --teacher Qwen/Qwen2.5-7B-Instruct (the paper distils a larger model).",),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (CPU, PAPER)}


@dataclass(frozen=True)
class Quick:
    """The `--quick` shrink: a smoke run of every arm in minutes on any preset."""

    config: Sections
    eval_limit: int = 8
    eval_max_new_tokens: int = 32
    passk_n: int = 4
    passk_limit: int = 8
    distill_problems: int = 8
    distill_n: int = 2


QUICK = Quick(
    config={
        "sampler": {"batch_size": 64, "max_new_tokens": 32},
        "algo": {"prompts_per_step": 4, "group_size": 4},
        "train": {"steps": 3, "micro_batch_size": 8, "warmup_steps": 0},
    }
)


def merge(*layers: Sections) -> Sections:
    """Sections merged field by field, later layers winning.

    >>> merge({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}, "b": {"z": 4}})
    {'a': {'x': 1, 'y': 3}, 'b': {'z': 4}}
    """
    out: Sections = {}
    for layer in layers:
        for sec, vals in layer.items():
            out.setdefault(sec, {}).update(vals)
    return out


def get_preset(name: str, quick: bool = False) -> Preset:
    """The preset `name`, shrunk by `QUICK` when `quick`; unknown names list the valid ones.

    >>> get_preset("cpu", quick=True).config["train"]["steps"], get_preset("cpu", quick=True).passk_n
    (3, 4)
    """
    if name not in PRESETS:
        raise KeyError(f"unknown study preset {name!r}; valid: {', '.join(PRESETS)}")
    p = PRESETS[name]
    if not quick:
        return p
    q = QUICK
    return replace(
        p, config=merge(p.config, q.config), eval_limit=q.eval_limit, eval_max_new_tokens=q.eval_max_new_tokens,
        passk_n=q.passk_n, passk_limit=q.passk_limit, distill_problems=q.distill_problems, distill_n=q.distill_n,
        ppo_mini_k=2,
    )  # fmt: skip
