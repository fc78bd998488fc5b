"""Named datasets, local JSONL files and hub datasets, all loaded as lists of `Example`.

`load_dataset(name_or_path, split)` accepts:
  - a name in `DATASETS` (files shipped in `dashrl/data/files`, so it works offline; sources,
    licenses and checksums are in `dashrl/data/files/SOURCES.md`);
  - a local `.jsonl` / `.jsonl.gz` path, with `problem_field` / `answer_field` / `tests_field`
    naming the fields (defaults: problem|question|prompt, answer, tests|test);
  - `hf:owner/name` (or `hf:owner/name:config`): a Hugging Face hub dataset through the `datasets`
    library, imported only then (never needed for the shipped sets).
Reading those files and the hub, and turning a user's record into an `Example`, is
`dashrl.data.records`'s; this module holds the named datasets' schemas.

Departures and choices, written down:
  - math_train: the 12,000-problem prm800k train split (MATH minus MATH-500), reconstructed (see
    SOURCES.md); the two answers that are null upstream are read from the solution's `\\boxed 2`.
    Two more (train/number_theory/7115.json and 7117.json) have an empty
    `\\boxed{}` upstream: they load with answer "" and every completion scores 0 on them.
  - gsm8k: the answer is the text after `####`, commas removed.
  - minerva: the answer is the last `\\boxed{}` of the solution; olympiadbench: `final_answer`
    entries with `$` stripped, joined with ", ".
  - mbpp: the standard task-id split: 11-510 test, 511-600 validation, 601-974 train, 1-10 prompt.
    The problem text lists the three test asserts (as in the MBPP paper), so the function name is
    known; `tests` is test_setup_code + the asserts (+ challenge asserts).
  - mbppplus: the paper trains on part of MBPP+ and tests on the rest. Its code base
    (shuoli90/efficient_reasoning, data/MBPPPlus) shuffles the hub copy with seed 42 and keeps 70%
    for training. We cannot rebuild their exact ids (their record order differs from the release),
    so we use the same rule on the v0.2.0 release order: `random.Random(42).shuffle` of the 378
    task ids as listed in the file, first 264 train, last 114 test. The resulting ids are stored in
    `files/code/mbppplus_split.json` (so they never depend on Python's RNG); "all" gives all 378.
    `tests` is the OriginFmt `test` script (plus inputs included).
  - `meta["solution"]` keeps the human-written solution where the file has one (math / math_train
    `solution`, gsm8k's worked answer, mbppplus `code`): the SFT-H data of `dashrl.data.sft`.
  - humaneval: `tests` = the test (defines `check`) + `check(<entry_point>)`.
  - humanevalplus: the base test as above, then every base + plus input is run through the
    canonical solution (defined in the test script under its own namespace) and the program, and
    the outputs are compared (floats with atol, 1e-6 if the task's atol is 0). HumanEval/32
    (find_zero: many right answers) keeps only its own test, as EvalPlus does.
  - Under the default sandbox limits (10 s, 1 GiB) three canonical solutions do not pass their
    own plus tests: HumanEval/139, Mbpp/255 (needs > 2 GiB) and Mbpp/599 (about 40 s).
    tests/integration/test_eval_canonical.py (slow) checks all the others.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dashrl.data import Example
from dashrl.data.records import (
    TABLE_FORMATS,
    DatasetError,
    answer_text,
    example_from_record,
    get_field,
    hub_rows,
    is_saved_dataset,
    iter_jsonl,
    table_rows,
)

__all__ = ["DATASETS", "FILES", "DatasetError", "DatasetSpec", "check_dataset_name", "iter_jsonl", "load_dataset"]

FILES = Path(__file__).parent / "files"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: one shipped file per split and a record -> Example builder."""

    files: dict[str, str]  # split -> path under dashrl/data/files
    default_split: str
    build: Callable[[dict, str], Example]  # (record, where) -> Example; where = "file:line"
    select: Callable[[dict, str], bool] | None = None  # (record, split) -> keep?
    kind: str = "math"
    extra: dict[str, Any] = field(default_factory=dict)


def _last_boxed(text: str, where: str) -> str:
    from dashrl.rewards.math_grading import _last_boxed as last_boxed

    answer = last_boxed(text)
    if answer is None:
        raise DatasetError(f"{where}: field 'solution' has no \\boxed answer")
    return answer


# ---- builders: one per file schema (schemas are in files/SOURCES.md) -------------------------


def _math(record: dict, where: str) -> Example:
    answer = get_field(record, "answer", where, optional=True)
    if answer is None:  # two train records; their solutions write \boxed 2 without braces
        answer = _last_boxed(get_field(record, "solution", where), where)
    level = record.get("level")
    return Example(
        id=get_field(record, "unique_id", where),
        problem=get_field(record, "problem", where),
        answer=answer,
        meta={
            "subject": record.get("subject"),
            "level": level if isinstance(level, int) else None,
            "solution": record.get("solution"),
        },
    )


def _gsm8k(record: dict, where: str) -> Example:
    full = get_field(record, "answer", where)
    if "####" not in full:
        raise DatasetError(f"{where}: field 'answer' has no '#### <final answer>'")
    return Example(
        id=where.rsplit("/", 1)[-1],
        problem=get_field(record, "question", where),
        answer=full.rsplit("####", 1)[1].strip().replace(",", ""),
        meta={"solution": full},
    )


def _qwen_eval(record: dict, where: str) -> Example:  # aime24, amc23
    return Example(
        id=str(get_field(record, "id", where, (str, int))),
        problem=get_field(record, "problem", where),
        answer=answer_text(get_field(record, "answer", where, (str, int, float))),
    )


def _minerva(record: dict, where: str) -> Example:
    return Example(
        id=str(get_field(record, "idx", where, (int, str))),
        problem=get_field(record, "problem", where),
        answer=_last_boxed(get_field(record, "solution", where), where),
        meta={"subject": record.get("type")},
    )


def _olympiad(record: dict, where: str) -> Example:
    answers = get_field(record, "final_answer", where, (list,))
    return Example(
        id=str(get_field(record, "id", where, (int, str))),
        problem=get_field(record, "question", where),
        answer=", ".join(str(a).strip().strip("$").strip() for a in answers),
        meta={"subject": record.get("subfield")},
    )


def _mbpp(record: dict, where: str) -> Example:
    asserts = get_field(record, "test_list", where, (list,))
    challenge = record.get("challenge_test_list") or []
    setup = record.get("test_setup_code") or ""
    shown = "\n".join(asserts)
    return Example(
        id=f"mbpp/{get_field(record, 'task_id', where, (int,))}",
        problem=f"{get_field(record, 'text', where)}\nYour code should pass these tests:\n{shown}",
        kind="code",
        tests="\n".join([setup, *asserts, *challenge]).strip() + "\n",
    )


def _mbpp_select(record: dict, split: str) -> bool:
    low, high = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}[split]
    return low <= record.get("task_id", 0) <= high


def _mbppplus_prompts() -> dict[int, tuple[str, str]]:
    prompts = {}
    for where, record in iter_jsonl(FILES / "code" / "MbppPlus-v0.2.0.jsonl.gz"):
        task = int(get_field(record, "task_id", where).split("/")[-1])
        text = get_field(record, "prompt", where).strip().strip('"').strip()
        prompts[task] = (text, get_field(record, "entry_point", where))
    return prompts


def _mbppplus_split() -> dict[str, set[int]]:
    with open(FILES / "code" / "mbppplus_split.json") as handle:
        split = json.load(handle)
    return {"train": set(split["train"]), "test": set(split["test"])}


def _mbppplus_select(record: dict, split: str) -> bool:
    return split == "all" or record.get("task_id") in _mbppplus_split()[split]


def _mbppplus(record: dict, where: str, prompts: dict[int, tuple[str, str]]) -> Example:
    task = get_field(record, "task_id", where, (int,))
    text, entry_point = prompts.get(task, (get_field(record, "prompt", where), None))
    return Example(
        id=f"Mbpp/{task}",
        problem=text,
        kind="code",
        tests=get_field(record, "test", where),
        meta={"entry_point": entry_point, "solution": record.get("code")},
    )


def _humaneval(record: dict, where: str) -> Example:
    entry = get_field(record, "entry_point", where)
    return Example(
        id=get_field(record, "task_id", where),
        problem=get_field(record, "prompt", where),
        kind="code",
        tests=f"{get_field(record, 'test', where)}\n\ncheck({entry})\n",
        meta={"entry_point": entry},
    )


_PLUS_CHECK = """
import copy as _copy, json as _json, math as _math

def _plus_close(out, exp, atol):
    if isinstance(exp, float) or isinstance(out, float):
        if not isinstance(out, (int, float)) or isinstance(out, bool) != isinstance(exp, bool):
            return False
        if _math.isnan(exp):
            return _math.isnan(out)
        return out == exp or _math.isclose(out, exp, rel_tol=1e-07, abs_tol=atol or 1e-6)
    if isinstance(exp, (list, tuple)) and isinstance(out, type(exp)) and len(out) == len(exp):
        return all(_plus_close(o, e, atol) for o, e in zip(out, exp))
    return type(out) == type(exp) and out == exp

def _plus_check(candidate):
    reference = {}
    exec(_PLUS_REFERENCE, reference)
    reference = reference[_PLUS_ENTRY]
    for inputs in _json.loads(_PLUS_INPUTS):
        expected = reference(*_copy.deepcopy(inputs))
        assert _plus_close(candidate(*_copy.deepcopy(inputs)), expected, _PLUS_ATOL), inputs
"""


def _humanevalplus(record: dict, where: str) -> Example:
    base = _humaneval(record, where)
    if base.id == "HumanEval/32":
        return base
    inputs = get_field(record, "base_input", where, (list,)) + get_field(record, "plus_input", where, (list,))
    reference = get_field(record, "prompt", where) + get_field(record, "canonical_solution", where)
    entry = base.meta["entry_point"]
    plus = (
        f"{_PLUS_CHECK}\n_PLUS_REFERENCE = {reference!r}\n_PLUS_ENTRY = {entry!r}\n"
        f"_PLUS_ATOL = {float(record.get('atol') or 0)!r}\n_PLUS_INPUTS = {json.dumps(inputs)!r}\n"
        f"_plus_check({entry})\n"
    )
    return Example(id=base.id, problem=base.problem, kind="code", tests=base.tests + plus, meta=base.meta)


DATASETS: dict[str, DatasetSpec] = {
    "math500": DatasetSpec({"test": "math/math500_test.jsonl.gz"}, "test", _math),
    "math_train": DatasetSpec({"train": "math/math_train12k_prm800k_reconstructed.jsonl.gz"}, "train", _math),
    "gsm8k": DatasetSpec({"train": "gsm8k/gsm8k_train.jsonl.gz", "test": "gsm8k/gsm8k_test.jsonl.gz"}, "test", _gsm8k),
    "aime24": DatasetSpec({"test": "math_ood/aime24_test.jsonl.gz"}, "test", _qwen_eval),
    "amc23": DatasetSpec({"test": "math_ood/amc23_test.jsonl.gz"}, "test", _qwen_eval),
    "minerva": DatasetSpec({"test": "math_ood/minerva_math_test.jsonl.gz"}, "test", _minerva),
    "olympiadbench": DatasetSpec({"test": "math_ood/olympiadbench_test.jsonl.gz"}, "test", _olympiad),
    "mbpp": DatasetSpec(
        dict.fromkeys(("test", "validation", "train", "prompt"), "code/mbpp.jsonl.gz"),
        "test",
        _mbpp,
        _mbpp_select,
        kind="code",
    ),  # fmt: skip
    "mbppplus": DatasetSpec(
        dict.fromkeys(("test", "train", "all"), "code/MbppPlus-OriginFmt-v0.2.0.jsonl.gz"),
        "test",
        _mbppplus,
        _mbppplus_select,
        kind="code",
    ),  # fmt: skip
    "humaneval": DatasetSpec({"test": "code/HumanEval.jsonl.gz"}, "test", _humaneval, kind="code"),
    "humanevalplus": DatasetSpec({"test": "code/HumanEvalPlus-v0.1.10.jsonl.gz"}, "test", _humanevalplus, kind="code"),
}


def _load_named(name: str, split: str | None, limit: int | None) -> list[Example]:
    spec = DATASETS[name]
    split = split or spec.default_split
    if split not in spec.files:
        raise DatasetError(f"dataset {name!r} has no split {split!r}; valid: {sorted(spec.files)}")
    build = spec.build
    if name == "mbppplus":
        prompts = _mbppplus_prompts()
        build = lambda record, where: _mbppplus(record, where, prompts)  # noqa: E731
    examples = []
    for where, record in iter_jsonl(FILES / spec.files[split]):
        if spec.select is None or spec.select(record, split):
            example = build(record, where)
            if limit is not None and len(examples) >= limit:
                break
            examples.append(Example(example.id, example.problem, example.answer, example.kind,
                                    example.tests, {"dataset": name, **example.meta}))  # fmt: skip
    return examples


def _is_path_like(name: str) -> bool:
    return (
        name.startswith("hf:")
        or name.endswith((".jsonl", ".jsonl.gz", *TABLE_FORMATS))
        or os.sep in name
        or is_saved_dataset(name)
    )


def check_dataset_name(name: str, also: Sequence[str] = ()) -> None:
    """Fail unless `name` is a shipped dataset, one of `also` (the command's own names, e.g. the
    training tasks), a file path or `hf:owner/name`; the message lists every valid name.

    >>> check_dataset_name("gsm8k")
    """
    if name in DATASETS or name in also or _is_path_like(name):
        return
    names = sorted({*DATASETS, *also})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DatasetError(
        f"unknown dataset {name!r}{hint}; valid names: {', '.join(names)}, or a .jsonl / .jsonl.gz path, or "
        "hf:owner/name"
    )


def load_dataset(
    name_or_path: str,
    split: str | None = None,
    *,
    problem_field: str | None = None,
    answer_field: str | None = None,
    tests_field: str | None = None,
    limit: int | None = None,
    subset: str | None = None,
    require_reference: bool = True,
) -> list[Example]:
    """Load a named dataset, a local file (.jsonl, .jsonl.gz, .json, .parquet, .csv), a
    `datasets.save_to_disk` folder or `hf:owner/name` as a list of `Example`.

    Every record's columns are kept (`Example.columns`); a `prompt` column holding chat messages
    becomes `Example.messages`. `require_reference=False` (reward functions of the user's own)
    accepts records without an answer or tests.

    >>> [len(load_dataset("math500")), load_dataset("gsm8k", "train", limit=1)[0].answer]
    [500, '72']
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    if name_or_path in DATASETS:
        if problem_field or answer_field or tests_field:
            raise DatasetError(f"{name_or_path!r} is a named dataset; field names apply to files only")
        return _load_named(name_or_path, split, limit)
    fields = {"problem": problem_field, "answer": answer_field, "tests": tests_field}
    check_dataset_name(name_or_path)
    if name_or_path.startswith("hf:"):
        rows: Iterator[tuple[str, dict]] = hub_rows(name_or_path, split, subset)
    elif name_or_path.endswith(tuple(TABLE_FORMATS)) or is_saved_dataset(name_or_path):
        rows = table_rows(name_or_path, split)
    else:
        rows = iter_jsonl(name_or_path)
    examples = []
    for where, record in rows:
        if limit is not None and len(examples) >= limit:
            break
        examples.append(example_from_record(record, where, name_or_path, fields, require_reference))
    return examples
