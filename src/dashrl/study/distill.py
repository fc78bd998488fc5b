"""A teacher's correct solutions to a task's problems, as SFT-M data: the library side of
`dashrl distill` (`dashrl.cli.distill`), also used by the study's SFT-M arm.

The teacher samples `n` completions per problem with the task's own prompts; only completions
graded correct (reward 1.0) are kept, the first `k` distinct ones per problem (the paper's
"correct only" rule for SFT-M).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.data.tasks import Task
    from dashrl.rollout import SamplingParams


class DistillError(ValueError):
    """Bad input to `dashrl distill`; the message names what is wrong."""


@dataclass
class DistillStats:
    problems: int
    covered: int  # problems with at least one kept completion
    samples: int
    correct: int  # samples graded correct, duplicates included
    kept: int  # written: correct, distinct, at most k per problem

    def line(self) -> str:
        return (
            f"problems covered: {self.covered}/{self.problems} ({self.covered / max(self.problems, 1):.1%}); "
            f"kept {self.kept} of {self.samples} samples ({self.kept / max(self.samples, 1):.1%}; "
            f"{self.correct} graded correct before dedup and the cap of k)"
        )


def select(texts: list[str], scores: list[float], k: int) -> list[str]:
    """The first `k` distinct texts graded correct (score >= 1), in order.

    >>> select(["a", "b", "a", "c", "d"], [1.0, 0.0, 1.0, 1.0, 1.0], k=2)
    ['a', 'c']
    """
    kept: list[str] = []
    for text, score in zip(texts, scores):
        if score >= 1.0 and text not in kept and len(kept) < k:
            kept.append(text)
    return kept


def distill(
    sampler: Any,
    tokenizer: Any,
    task: "Task",
    *,
    problems: int,
    n: int,
    k: int,
    params: "SamplingParams",
    seed: int = 0,
) -> tuple[list[dict], DistillStats]:
    """Sample `n` completions for each of the task's first `problems` problems, keep the correct.

    Sampling goes in parts of whole inference batches (`start` offsets of the Sampler
    protocol), so it samples exactly what one call over all prompts would.

    >>> records, stats = distill(sampler, tok, task, problems=10, n=8, k=2, params=params)  # doctest: +SKIP
    """
    from dashrl.data.prompts import build_prompt

    examples = [task.get(i) for i in range(problems)]
    prompts = [build_prompt(tokenizer, ex) for ex in examples for _ in range(n)]
    part = params.batch_size * 4
    texts: list[str] = []
    for start in range(0, len(prompts), part):
        texts += [c.text for c in sampler.generate(prompts[start : start + part], params, seed, start=start)]
        if len(prompts) > part:
            print(f"[dashrl] distill: sampled {len(texts)}/{len(prompts)}", file=sys.stderr, flush=True)
    scores = task.score([ex for ex in examples for _ in range(n)], texts)
    records: list[dict] = []
    stats = DistillStats(problems, 0, len(texts), sum(s >= 1.0 for s in scores), 0)
    for j, ex in enumerate(examples):
        kept = select(texts[j * n : (j + 1) * n], scores[j * n : (j + 1) * n], k)
        stats.kept += len(kept)
        stats.covered += bool(kept)
        records += [
            {"id": ex.id, "problem": ex.problem, "completion": t, "answer": ex.answer, "kind": ex.kind} for t in kept
        ]
    return records, stats


def resolve_teacher(spec: str) -> str:
    """A model spec `load_model` accepts; a dashrl run folder becomes its newest checkpoint.

    Checked without loading anything: a missing folder, or a run folder without a
    checkpoint, fails here.

    >>> resolve_teacher("HuggingFaceTB/SmolLM2-360M-Instruct")
    'HuggingFaceTB/SmolLM2-360M-Instruct'
    """
    from dashrl.models import ALIASES, ModelError, resolve_model_path

    if spec in ALIASES:
        return spec
    path = Path(spec).expanduser()
    if path.is_dir() and not (path / "config.json").is_file():
        if (path / "checkpoints").is_dir() or (path / "config.toml").is_file():  # a dashrl run folder
            from dashrl.train.checkpoint import latest_checkpoint

            ckpt = latest_checkpoint(path, resumable=False)
            if ckpt is None:
                raise DistillError(f"--teacher {spec}: the run folder has no finished checkpoint yet")
            return str(ckpt)
    try:
        return resolve_model_path(spec)
    except ModelError as e:
        raise DistillError(f"--teacher: {e}") from None
