"""Supervised fine-tuning data: (problem, completion) pairs -> prompt + completion token ids.

Two sources (the paper's SFT-H and SFT-M baselines):
  - `human`: the human-written solutions that ship with the task's data (`human_pairs`):
      - math (MATH train): the `solution` field as is (it ends with `\\boxed{}`);
      - gsm8k: the worked answer with its `<<48/2=24>>` calculator notes removed and the
        closing `#### 72` replaced by "The answer is \\boxed{72}." (`gsm8k_solution`);
      - mbppplus: the reference code (`code`) in a fenced ```python block;
      - wordproblems: the procedural task's worked solution.
  - a JSONL file (`load_pairs`): one record per line with the problem and the completion
    (default fields `problem` and `completion`, both renameable), e.g. the traces that
    `dashrl distill` writes. A record's `kind` field ("math" or "code") picks the prompt's
    answer instruction; the default is math.

`build_records` renders the prompt exactly as RL does (`dashrl.data.prompts.build_prompt`:
same chat template, same answer instruction) and tokenizes the completion after it, ending
with the tokenizer's EOS, so the model learns to stop where RL's sampler stops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from dashrl.data import Example
from dashrl.data.datasets import load_dataset
from dashrl.data.records import DatasetError, get_field, iter_jsonl

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import TaskConfig

_CALC_RE = re.compile(r"<<[^<>]*>>")
_FINAL_RE = re.compile(r"\n?####\s*(.+?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class SFTRecord:
    """One supervised example: prompt ids as RL renders them, completion ids ending with EOS."""

    id: str
    prompt_ids: list[int]
    completion_ids: list[int]
    example: Example


def gsm8k_solution(worked: str) -> str:
    """GSM8K's worked answer as a solution ending in `\\boxed{answer}`.

    >>> gsm8k_solution("She sold 48/2 = <<48/2=24>>24 clips.\\n#### 1,024")
    'She sold 48/2 = 24 clips.\\nThe answer is \\\\boxed{1024}.'
    """
    match = _FINAL_RE.search(worked)
    if match is None:
        raise ValueError("a GSM8K answer ends with '#### <final answer>'")
    body = _CALC_RE.sub("", worked[: match.start()]).rstrip()
    final = match.group(1).strip().replace(",", "")
    return f"{body}\nThe answer is \\boxed{{{final}}}." if body else f"The answer is \\boxed{{{final}}}."


def code_solution(code: str) -> str:
    """Reference code in the fenced block the code reward extracts.

    >>> code_solution("\\ndef f(x):\\n  return x\\n")
    '```python\\ndef f(x):\\n  return x\\n```'
    """
    return f"```python\n{code.strip()}\n```"


def human_solution(example: Example) -> str:
    """The human-written solution of a shipped example, as a completion RL would grade correct."""
    dataset, solution = example.meta.get("dataset"), example.meta.get("solution")
    if not solution:
        raise DatasetError(f"{dataset} example {example.id}: no human solution ships with it")
    if dataset == "gsm8k":
        return gsm8k_solution(solution)
    if dataset == "mbppplus":
        return code_solution(solution)
    return solution  # math_train, math500, wordproblems: already a worked solution ending in \boxed{}


HUMAN_DATASETS = {"gsm8k": "gsm8k", "math": "math_train", "math_train": "math_train", "mbppplus": "mbppplus"}


def human_pairs(
    task: str, split: str = "train", limit: int | None = None, difficulty: int = 2, seed: int = 0
) -> list[tuple[Example, str]]:
    """(example, human solution) pairs of a task: gsm8k, math, mbppplus or wordproblems.

    >>> human_pairs("gsm8k", limit=1)[0][1].endswith("The answer is \\\\boxed{72}.")
    True
    """
    if task == "wordproblems":
        from dashrl.data.wordproblems import solution, wordproblem_example

        examples = [wordproblem_example(seed, i, difficulty) for i in range(limit or 1000)]
        return [(ex, solution(ex)) for ex in examples]
    if task not in HUMAN_DATASETS:
        valid = sorted([*HUMAN_DATASETS, "wordproblems"])
        raise DatasetError(
            f"task {task!r} ships no human solutions; valid: {valid}, or give a JSONL of problem/completion records"
        )
    return [(ex, human_solution(ex)) for ex in load_dataset(HUMAN_DATASETS[task], split, limit=limit)]


def load_pairs(
    path: str, *, problem_field: str = "problem", completion_field: str = "completion", limit: int | None = None
) -> list[tuple[Example, str]]:
    """(example, completion) pairs from a JSONL(.gz) file; bad records fail naming file:line and field.

    Optional fields: `id`, `answer`, `tests`, `kind` ("math" or "code").

    >>> load_pairs("traces.jsonl")[0][1]  # doctest: +SKIP
    'Add them: 2 + 3 = 5. \\\\boxed{5}'
    """
    pairs = []
    for where, record in iter_jsonl(path):
        if limit is not None and len(pairs) >= limit:
            break
        problem = get_field(record, problem_field, where)
        completion = get_field(record, completion_field, where)
        if not completion.strip():
            raise DatasetError(f"{where}: field {completion_field!r} is empty")
        kind = get_field(record, "kind", where, optional=True) or "math"
        if kind not in ("math", "code"):
            raise DatasetError(f"{where}: field 'kind' should be 'math' or 'code', got {kind!r}")
        answer = get_field(record, "answer", where, (str, int, float), optional=True)
        example = Example(
            id=str(record.get("id", where.rsplit(":", 1)[-1])),
            problem=problem,
            answer=None if answer is None else str(answer),
            kind=kind,
            tests=get_field(record, "tests", where, optional=True),
            meta={"dataset": str(path)},
        )
        pairs.append((example, completion))
    if not pairs:
        raise DatasetError(f"{path}: no records")
    return pairs


def sft_pairs(
    data: str,
    task: "TaskConfig",
    seed: int = 0,
    *,
    problem_field: str = "problem",
    completion_field: str = "completion",
) -> list[tuple[Example, str]]:
    """The pairs named by `--sft.data`: `human` (the task's own solutions) or a JSONL path.

    `task` gives the task name, split, limit and (word problems) difficulty; the field names
    apply to a JSONL file only.

    >>> from dashrl.config import TaskConfig
    >>> len(sft_pairs("human", TaskConfig(name="gsm8k", limit=3)))
    3
    """
    if data == "human":
        return human_pairs(task.name, task.split, task.limit or None, task.difficulty, seed)
    return load_pairs(data, problem_field=problem_field, completion_field=completion_field, limit=task.limit or None)


def build_records(tokenizer: Any, pairs: Sequence[tuple[Example, str]]) -> list[SFTRecord]:
    """Tokenize pairs: the prompt as RL renders it, then the completion and the EOS token.

    >>> build_records(tok, [(Example(id="0", problem="2+3?", answer="5"), "\\\\boxed{5}")])[0].completion_ids[-1] == (
    ...     tok.eos_token_id)  # doctest: +SKIP
    True
    """
    from dashrl.data.prompts import build_prompt

    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token: SFT completions must end with one")
    records = []
    for example, completion in pairs:
        ids = list(tokenizer(completion, add_special_tokens=False)["input_ids"])
        records.append(
            SFTRecord(example.id, build_prompt(tokenizer, example), ids + [int(tokenizer.eos_token_id)], example)
        )
    return records
