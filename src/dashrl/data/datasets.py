"""Named datasets, local JSONL files and hub datasets, all loaded as lists of `Example`.

`load_dataset(name_or_path, split)` accepts:
  - a name in `DATASETS` (files shipped in `dashrl/data/files`, so it works offline; sources,
    licenses and checksums are in `dashrl/data/files/SOURCES.md`);
  - a local `.jsonl` / `.jsonl.gz` path, with `problem_field` / `answer_field` / `tests_field`
    naming the fields (defaults: problem|question|prompt, answer, tests|test);
  - `hf:owner/name` (or `hf:owner/name:config`): a Hugging Face hub dataset through the `datasets`
    library, imported only then (never needed for the shipped sets).

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
import gzip
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dashrl.data import Example

FILES = Path(__file__).parent / "files"


class DatasetError(ValueError):
    """A dataset file or record that cannot be used; the message names file, line and field."""


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: one shipped file per split and a record -> Example builder."""

    files: dict[str, str]  # split -> path under dashrl/data/files
    default_split: str
    build: Callable[[dict, str], Example]  # (record, where) -> Example; where = "file:line"
    select: Callable[[dict, str], bool] | None = None  # (record, split) -> keep?
    kind: str = "math"
    extra: dict[str, Any] = field(default_factory=dict)


def _get(record: dict, key: str, where: str, kinds: tuple = (str,), optional: bool = False) -> Any:
    """`record[key]`, checked: raises DatasetError naming file:line and field."""
    if key not in record or record[key] is None:
        if optional:
            return None
        raise DatasetError(f"{where}: missing field {key!r} (fields present: {sorted(record)})")
    value = record[key]
    if not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise DatasetError(f"{where}: field {key!r} should be {names}, got {type(value).__name__}")
    return value


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield `("file:line", record)` for each non-empty line of a .jsonl or .jsonl.gz file.

    >>> next(iter_jsonl(FILES / "math_ood" / "amc23_test.jsonl.gz"))[0].endswith(":1")
    True
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DatasetError(f"{where}: invalid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(record, dict):
                    raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
                yield where, record
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


def _last_boxed(text: str, where: str) -> str:
    from dashrl.rewards.math_grading import _last_boxed as last_boxed

    answer = last_boxed(text)
    if answer is None:
        raise DatasetError(f"{where}: field 'solution' has no \\boxed answer")
    return answer


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


# ---- builders: one per file schema (schemas are in files/SOURCES.md) -------------------------


def _math(record: dict, where: str) -> Example:
    answer = _get(record, "answer", where, optional=True)
    if answer is None:  # two train records; their solutions write \boxed 2 without braces
        answer = _last_boxed(_get(record, "solution", where), where)
    level = record.get("level")
    return Example(
        id=_get(record, "unique_id", where),
        problem=_get(record, "problem", where),
        answer=answer,
        meta={
            "subject": record.get("subject"),
            "level": level if isinstance(level, int) else None,
            "solution": record.get("solution"),
        },
    )


def _gsm8k(record: dict, where: str) -> Example:
    full = _get(record, "answer", where)
    if "####" not in full:
        raise DatasetError(f"{where}: field 'answer' has no '#### <final answer>'")
    return Example(
        id=where.rsplit("/", 1)[-1],
        problem=_get(record, "question", where),
        answer=full.rsplit("####", 1)[1].strip().replace(",", ""),
        meta={"solution": full},
    )


def _qwen_eval(record: dict, where: str) -> Example:  # aime24, amc23
    return Example(
        id=str(_get(record, "id", where, (str, int))),
        problem=_get(record, "problem", where),
        answer=_number(_get(record, "answer", where, (str, int, float))),
    )


def _minerva(record: dict, where: str) -> Example:
    return Example(
        id=str(_get(record, "idx", where, (int, str))),
        problem=_get(record, "problem", where),
        answer=_last_boxed(_get(record, "solution", where), where),
        meta={"subject": record.get("type")},
    )


def _olympiad(record: dict, where: str) -> Example:
    answers = _get(record, "final_answer", where, (list,))
    return Example(
        id=str(_get(record, "id", where, (int, str))),
        problem=_get(record, "question", where),
        answer=", ".join(str(a).strip().strip("$").strip() for a in answers),
        meta={"subject": record.get("subfield")},
    )


def _mbpp(record: dict, where: str) -> Example:
    asserts = _get(record, "test_list", where, (list,))
    challenge = record.get("challenge_test_list") or []
    setup = record.get("test_setup_code") or ""
    shown = "\n".join(asserts)
    return Example(
        id=f"mbpp/{_get(record, 'task_id', where, (int,))}",
        problem=f"{_get(record, 'text', where)}\nYour code should pass these tests:\n{shown}",
        kind="code",
        tests="\n".join([setup, *asserts, *challenge]).strip() + "\n",
    )


def _mbpp_select(record: dict, split: str) -> bool:
    low, high = {"prompt": (1, 10), "test": (11, 510), "validation": (511, 600), "train": (601, 974)}[split]
    return low <= record.get("task_id", 0) <= high


def _mbppplus_prompts() -> dict[int, tuple[str, str]]:
    prompts = {}
    for where, record in iter_jsonl(FILES / "code" / "MbppPlus-v0.2.0.jsonl.gz"):
        task = int(_get(record, "task_id", where).split("/")[-1])
        text = _get(record, "prompt", where).strip().strip('"').strip()
        prompts[task] = (text, _get(record, "entry_point", where))
    return prompts


def _mbppplus_split() -> dict[str, set[int]]:
    with open(FILES / "code" / "mbppplus_split.json") as handle:
        split = json.load(handle)
    return {"train": set(split["train"]), "test": set(split["test"])}


def _mbppplus_select(record: dict, split: str) -> bool:
    return split == "all" or record.get("task_id") in _mbppplus_split()[split]


def _mbppplus(record: dict, where: str, prompts: dict[int, tuple[str, str]]) -> Example:
    task = _get(record, "task_id", where, (int,))
    text, entry_point = prompts.get(task, (_get(record, "prompt", where), None))
    return Example(
        id=f"Mbpp/{task}",
        problem=text,
        kind="code",
        tests=_get(record, "test", where),
        meta={"entry_point": entry_point, "solution": record.get("code")},
    )


def _humaneval(record: dict, where: str) -> Example:
    entry = _get(record, "entry_point", where)
    return Example(
        id=_get(record, "task_id", where),
        problem=_get(record, "prompt", where),
        kind="code",
        tests=f"{_get(record, 'test', where)}\n\ncheck({entry})\n",
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
    inputs = _get(record, "base_input", where, (list,)) + _get(record, "plus_input", where, (list,))
    reference = _get(record, "prompt", where) + _get(record, "canonical_solution", where)
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


def _chat_messages(value: Any, where: str, key: str) -> list[dict[str, str]] | None:
    """A field holding TRL's conversational prompt (a list of role/content dicts), checked; else None."""
    if not isinstance(value, list):
        return None
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DatasetError(
                f"{where}: field {key!r} message {i} should be {{'role': str, 'content': str}}, got {m!r:.80}"
            )
    if not value:
        raise DatasetError(f"{where}: field {key!r} is an empty message list")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _from_record(
    record: dict, where: str, source: str, fields: dict[str, str | None], require_reference: bool = True
) -> Example:
    def pick(role: str, candidates: tuple[str, ...], optional: bool) -> Any:
        if fields[role]:
            return _get(record, fields[role], where, (str, int, float), optional)
        for key in candidates:
            if record.get(key) is not None:
                return _get(record, key, where, (str, int, float))
        if optional:
            return None
        raise DatasetError(
            f"{where}: missing field {' or '.join(map(repr, candidates))} for the {role} "
            f"(fields present: {sorted(record)}); name it with --task.{role}_field"
        )

    prompt_key = fields["problem"] or "prompt"
    messages = _chat_messages(record.get(prompt_key), where, prompt_key)
    if messages is not None:  # TRL's conversational format: the last user message is the problem text
        problem = next((m["content"] for m in reversed(messages) if m["role"] == "user"), messages[-1]["content"])
    else:
        problem = pick("problem", ("problem", "question", "prompt"), optional=False)
    tests = pick("tests", ("tests", "test"), optional=True)
    answer = pick("answer", ("answer",), optional=tests is not None or not require_reference)
    if tests is None and answer is None and require_reference:
        raise DatasetError(f"{where}: field 'answer' is empty")
    ident = record.get("id", record.get("task_id", where.rsplit(":", 1)[-1]))
    answer = None if answer is None else _number(answer)
    tests = None if tests is None else str(tests)
    columns = {
        **record,
        **({"answer": answer} if answer is not None else {}),
        **({"tests": tests} if tests is not None else {}),
    }
    return Example(
        id=str(ident),
        problem=str(problem),
        answer=answer,
        kind="code" if tests is not None else "math",
        tests=tests,
        meta={"dataset": source, **{k: record[k] for k in ("subject", "level") if k in record}},
        messages=messages,
        columns=columns,
    )


TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json"}  # suffix -> `datasets` builder


def _is_saved_dataset(path: str) -> bool:
    """A folder written by `datasets.save_to_disk` (a Dataset or a DatasetDict)."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def _rows(ds: Any, label: str) -> Iterator[tuple[str, dict]]:
    for number, record in enumerate(ds, start=1):
        yield f"{label}:row {number}", dict(record)


def _load_table(path: str, split: str | None) -> Iterator[tuple[str, dict]]:
    """Rows of a .parquet / .csv / .json file or a `save_to_disk` folder, through `datasets`."""
    try:
        import datasets  # imported only for these formats: `import dashrl` stays light
    except ImportError:
        raise DatasetError(f"{path}: reading it needs the `datasets` package (pip install datasets)") from None
    datasets.disable_progress_bars()
    try:
        if _is_saved_dataset(path):
            ds = datasets.load_from_disk(path)
            if isinstance(ds, datasets.DatasetDict):
                if (split or "train") not in ds:
                    raise DatasetError(f"{path}: no split {split or 'train'!r}; splits: {', '.join(ds)} (--task.split)")
                ds = ds[split or "train"]
        else:
            if not Path(path).is_file():
                raise DatasetError(f"{path}: no such file")
            ds = datasets.load_dataset(TABLE_FORMATS[Path(path).suffix], data_files=path, split="train")
    except DatasetError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow / datasets parse errors: one line naming the file
        raise DatasetError(
            f"{path}: cannot read it as {Path(path).suffix or 'a saved dataset'} ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    return _rows(ds, path)


def _load_hub(name: str, split: str | None, subset: str | None = None) -> Iterator[tuple[str, dict]]:
    try:
        import datasets  # noqa: F401 - optional dependency
    except ImportError:
        raise DatasetError(f"{name}: hub datasets need the `datasets` package (pip install datasets)") from None
    from dashrl.models import hub_unreachable

    repo, _, config = name[3:].partition(":")
    reason = hub_unreachable()  # one 3 s probe, instead of datasets' retries against a hub that is not there
    was_offline = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = was_offline or reason is not None  # unreachable: read the local cache only
    try:
        rows = datasets.load_dataset(repo, config or subset or None, split=split or "train")
    except (ConnectionError, FileNotFoundError) as err:  # datasets' "not on the hub, not in the cache"
        if reason is None:
            raise DatasetError(f"{name}: {' '.join(str(err).split())}") from None
        raise DatasetError(
            f"{name}: the dataset is not in the local Hugging Face cache and {reason}; download it on a machine "
            "with access, or save it as a .jsonl file and pass its path"
        ) from None
    except ValueError as err:  # a split or config the dataset does not have
        raise DatasetError(f"{name}: {' '.join(str(err).split())}") from None
    finally:
        datasets.config.HF_HUB_OFFLINE = was_offline
    for number, record in enumerate(rows, start=1):
        yield f"{name}[{split or 'train'}]:{number}", dict(record)


def _is_path_like(name: str) -> bool:
    return (
        name.startswith("hf:")
        or name.endswith((".jsonl", ".jsonl.gz", *TABLE_FORMATS))
        or os.sep in name
        or _is_saved_dataset(name)
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
        rows: Iterator[tuple[str, dict]] = _load_hub(name_or_path, split, subset)
    elif name_or_path.endswith(tuple(TABLE_FORMATS)) or _is_saved_dataset(name_or_path):
        rows = _load_table(name_or_path, split)
    else:
        rows = iter_jsonl(name_or_path)
    examples = []
    for where, record in rows:
        if limit is not None and len(examples) >= limit:
            break
        examples.append(_from_record(record, where, name_or_path, fields, require_reference))
    return examples
