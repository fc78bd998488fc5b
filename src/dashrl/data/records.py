"""Reading records: JSONL files, table files (.parquet, .csv, .json), `datasets.save_to_disk`
folders and hub datasets as `("where", record)` pairs, and the user's own records as `Example`s.

`where` names the file and line (or row) of every record, so each error can say which one is
wrong and in which field (`DatasetError`). The named datasets' own schemas are in
`dashrl.data.datasets`; the `datasets` library is imported only for the table and hub formats.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any, Iterator

from dashrl.data import Example


class DatasetError(ValueError):
    """A dataset file or record that cannot be used; the message names file, line and field."""


def get_field(record: dict, key: str, where: str, kinds: tuple = (str,), optional: bool = False) -> Any:
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

    >>> next(iter_jsonl(Path(__file__).parent / "files" / "math_ood" / "amc23_test.jsonl.gz"))[0].endswith(":1")
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


def answer_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


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


def example_from_record(
    record: dict, where: str, source: str, fields: dict[str, str | None], require_reference: bool = True
) -> Example:
    def pick(role: str, candidates: tuple[str, ...], optional: bool) -> Any:
        if fields[role]:
            return get_field(record, fields[role], where, (str, int, float), optional)
        for key in candidates:
            if record.get(key) is not None:
                return get_field(record, key, where, (str, int, float))
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
    answer = None if answer is None else answer_text(answer)
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


def is_saved_dataset(path: str) -> bool:
    """A folder written by `datasets.save_to_disk` (a Dataset or a DatasetDict)."""
    p = Path(path)
    return p.is_dir() and any((p / f).is_file() for f in ("dataset_info.json", "state.json", "dataset_dict.json"))


def _rows(ds: Any, label: str) -> Iterator[tuple[str, dict]]:
    for number, record in enumerate(ds, start=1):
        yield f"{label}:row {number}", dict(record)


def table_rows(path: str, split: str | None) -> Iterator[tuple[str, dict]]:
    """Rows of a .parquet / .csv / .json file or a `save_to_disk` folder, through `datasets`."""
    try:
        import datasets  # imported only for these formats: `import dashrl` stays light
    except ImportError:
        raise DatasetError(f"{path}: reading it needs the `datasets` package (pip install datasets)") from None
    datasets.disable_progress_bars()
    try:
        if is_saved_dataset(path):
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


def hub_rows(name: str, split: str | None, subset: str | None = None) -> Iterator[tuple[str, dict]]:
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
