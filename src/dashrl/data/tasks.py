"""Training tasks: an ordered stream of problems plus the reward that grades answers.

A task maps a global sample index to an `Example` deterministically from the seed
(datasets are reshuffled each epoch with a seed-derived permutation), so the problems
of step s are a pure function of (seed, s): resumes and workers never skip or repeat.
Registry: `TASKS` (an unknown name falls back to `dashrl.data.datasets`, which also
takes local JSONL paths).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

from dashrl.data import Example
from dashrl.data.arithmetic import arithmetic_example
from dashrl.data.wordproblems import wordproblem_example

if TYPE_CHECKING:  # pragma: no cover
    from dashrl.config import RewardConfig, TaskConfig
    from dashrl.rewards.funcs import RewardFn, Scored


@dataclass
class Task:
    """A stream of problems: `get(i)` is problem i; `size` is None for endless tasks.

    `reward(example, completion)` grades one answer; None means the standard rewards of
    `dashrl.rewards` by example kind (math equivalence, or code run in the sandbox pool).
    That is the task's own check. `funcs` (TRL-convention reward functions, `dashrl.rewards.funcs`)
    replace it as the training reward when given; the own check then only gives `accuracy`.
    """

    name: str
    get: Callable[[int], Example]
    size: int | None
    reward: Callable[[Example, str], float] | None = None
    funcs: tuple["RewardFn", ...] = ()
    env: Any = None  # a `dashrl.env.loading.EnvSpec` given in Python (`dashrl.train(environment_factory=, tools=)`)

    def batch(self, step: int, n: int) -> list[Example]:
        """The `n` problems of optimizer step `step` (or of sampling cycle `step`)."""
        return [self.get(step * n + j) for j in range(n)]

    def score(self, examples: Sequence[Example], completions: Sequence[str]) -> list[float]:
        """Rewards of a batch of completions (code runs in parallel in the sandbox)."""
        if self.reward is not None:
            return [self.reward(ex, c) for ex, c in zip(examples, completions)]
        from dashrl.rewards import rewards

        return rewards(examples, completions)

    def grade(self, examples: Sequence[Example], completions: Sequence[Any]) -> "Scored":
        """The training rewards of sampled `completions` (objects with `text` and `token_ids`),
        each function's values, and the task's own correctness check where it has one."""
        from dashrl.rewards.funcs import Scored

        texts = [c.text for c in completions]
        if not self.funcs:  # the task's own reward: the check is the reward
            own = self.score(examples, texts)
            return Scored(own, {}, [float(r >= 1.0) for r in own])
        return grade_with(self.funcs, examples, completions, self._own_check)

    def _own_check(self, examples: Sequence[Example], texts: Sequence[str]) -> list[float | None] | None:
        """The task's own check (1.0 = correct) where every example has a reference, else None."""
        if self.reward is None and any(ex.answer is None and ex.tests is None for ex in examples):
            return None
        return [float(r >= 1.0) for r in self.score(examples, texts)]


def columns_of(examples: Sequence[Example]) -> dict[str, list[Any]]:
    """The keyword columns reward functions get: every record column (the union over the batch,
    None where a record lacks one); a procedural or named task gives `problem` and `answer`
    (`tests` for code).

    >>> columns_of([Example(id="1", problem="2+2?", answer="4")])
    {'problem': ['2+2?'], 'answer': ['4']}
    """
    rows = [ex.columns or {"problem": ex.problem, "answer": ex.answer,
                           **({"tests": ex.tests} if ex.tests is not None else {})}
            for ex in examples]  # fmt: skip
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: [row.get(k) for row in rows] for k in keys}


def grade_with(
    funcs: Sequence["RewardFn"],
    examples: Sequence[Example],
    completions: Sequence[Any],
    own_check: Callable[..., Any] | None = None,
) -> "Scored":
    """Score completions with TRL-convention functions (`dashrl.rewards.funcs.score`).

    The task's own check gives `correct`: computed by `own_check` (the task's `_own_check`:
    None where an example has no reference), or None without one (no accuracy).

    >>> from types import SimpleNamespace as C
    >>> from dashrl.rewards.funcs import reward_funcs
    >>> grade_with(reward_funcs(["integer"]), [Example(id="1", problem="2+2?", answer="4")],
    ...            [C(text="4", token_ids=[7])]).rewards
    [1.0]
    """
    from dashrl.rewards.funcs import Scored, score

    texts = [c.text for c in completions]
    prompts = [ex.messages if ex.messages is not None else ex.problem for ex in examples]
    shown = [[{"role": "assistant", "content": t}] if ex.messages is not None else t for ex, t in zip(examples, texts)]
    ids = [c.token_ids for c in completions]
    where = lambda i: f"record {examples[i].id!r}"  # noqa: E731
    total, per_func = score(funcs, prompts, shown, ids, columns_of(examples), where)
    correct = own_check(examples, texts) if own_check is not None else None
    return Scored(total, per_func, correct)


def _from_examples(name: str, examples: list[Example], seed: int) -> Task:
    if not examples:
        raise ValueError(f"task {name!r} has no examples")
    n = len(examples)
    perms: dict[int, list[int]] = {}

    def get(i: int) -> Example:
        epoch, k = divmod(i, n)
        if epoch not in perms:
            order = list(range(n))
            random.Random(f"order:{seed}:{epoch}").shuffle(order)
            perms.clear()  # keep one epoch's permutation: O(n) memory
            perms[epoch] = order
        return examples[perms[epoch][k]]

    return Task(name=name, get=get, size=n)


def _arithmetic(cfg: "TaskConfig", seed: int) -> Task:
    return Task("arithmetic", lambda i: arithmetic_example(seed, i, cfg.difficulty), None)


def _wordproblems(cfg: "TaskConfig", seed: int) -> Task:
    return Task("wordproblems", lambda i: wordproblem_example(seed, i, cfg.difficulty), None)


def _dataset(name: str) -> Callable[..., Task]:
    def make(cfg: "TaskConfig", seed: int, require_reference: bool = True) -> Task:
        from dashrl.data.datasets import DatasetError, load_dataset

        examples = load_dataset(
            name,
            split=cfg.split,
            problem_field=cfg.problem_field or None,
            answer_field=cfg.answer_field or None,
            tests_field=cfg.tests_field or None,
            limit=cfg.limit or None,
            subset=cfg.subset or None,
            require_reference=require_reference,
        )
        if not examples:
            raise DatasetError(f"{name}: no problems to train on (an empty file, split or limit)")
        return _from_examples(name, examples, seed)

    return make


TASKS: dict[str, Callable[["TaskConfig", int], Task]] = {
    "arithmetic": _arithmetic,
    "wordproblems": _wordproblems,
    "gsm8k": _dataset("gsm8k"),
    "math": _dataset("math_train"),
}


def wrap_prompt(example: Example, cfg: "TaskConfig", where: str = "") -> Example:
    """`example` with `task.system_prompt` and `task.template` applied (as chat messages); unchanged
    when neither is set, so the default rendering stays today's.

    >>> from dashrl.config import TaskConfig
    >>> wrap_prompt(Example(id="1", problem="2+2?"),
    ...             TaskConfig(template="Q: {problem}", system_prompt="Be brief.")).messages
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Q: 2+2?'}]
    """
    if not cfg.system_prompt and not cfg.template:
        return example
    messages = list(example.messages) if example.messages is not None else None
    if messages is None:
        from dashrl.data.prompts import prompt_text

        text = prompt_text(example)
        if cfg.template:
            values = {**example.columns, "problem": example.problem}
            try:
                text = cfg.template.format(**values)
            except (KeyError, IndexError) as e:
                from dashrl.data.datasets import DatasetError

                raise DatasetError(
                    f"{where or example.id}: --task.template names {e} but the record has no such field (fields: "
                    f"{sorted(values)})"
                ) from None
        messages = [{"role": "user", "content": text}]
    if cfg.system_prompt and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": cfg.system_prompt}, *messages]
    return replace(example, messages=messages)


def _wrapped(task: Task, cfg: "TaskConfig") -> Task:
    if not cfg.system_prompt and not cfg.template:
        return task
    if task.size is not None:  # check every record now: a bad one fails before the model loads
        for i in range(task.size):
            wrap_prompt(task.get(i), cfg)
    get = task.get
    return replace(task, get=lambda i: wrap_prompt(get(i), cfg))


def make_task(
    cfg: "TaskConfig",
    seed: int,
    reward: "RewardConfig | None" = None,
    funcs: Sequence[Any] = (),
    weights: Sequence[float] = (),
) -> Task:
    """Build the training task named by `cfg.name` (a registry name, dataset name or path).

    Reward functions come from `reward` (`[reward]` names) or `funcs` (callables or names, as
    the Python API passes them), each loaded and checked against the task's columns here, in
    one line, before any model loads.

    >>> from dashrl.config import TaskConfig
    >>> make_task(TaskConfig(name="arithmetic", difficulty=1), seed=0).batch(0, 1)[0].problem
    'What is 9 * 3?'
    >>> make_task(TaskConfig(name="arithmetic"), seed=0, funcs=["integer"]).funcs[0].name
    'integer'
    """
    from dashrl.data.datasets import check_dataset_name

    check_dataset_name(cfg.name, also=tuple(TASKS))
    loaded = _load_funcs(reward, funcs, weights)
    if cfg.name in TASKS:
        task = TASKS[cfg.name](cfg, seed)
        if cfg.limit and task.size is None:  # a pool of the first N generated problems, cycled as a dataset
            task = _from_examples(task.name, [task.get(i) for i in range(cfg.limit)], seed)
    else:
        task = _dataset(cfg.name)(cfg, seed, require_reference=not loaded)
    return _finish(task, cfg, loaded)


def _load_funcs(
    reward: "RewardConfig | None", funcs: Sequence[Any], weights: Sequence[float]
) -> tuple["RewardFn", ...]:
    """`[reward]` names first, then the given callables or names, each with its weight."""
    from dashrl.rewards.funcs import reward_funcs

    names = reward.func_names if reward is not None else []
    if not names and not funcs:
        return ()
    named_weights = (reward.weight_values if reward is not None else []) or [1.0] * len(names)
    return reward_funcs([*names, *funcs], [*named_weights, *(list(weights) or [1.0] * len(funcs))])


def _finish(task: Task, cfg: "TaskConfig", loaded: tuple["RewardFn", ...]) -> Task:
    """Prompt wrapping, then the reward functions, checked against the task's columns."""
    from dashrl.rewards.funcs import check_signature

    task = _wrapped(task, cfg)
    if loaded:
        check_signature(loaded, list(columns_of([task.get(0)])))
        task = replace(task, funcs=loaded)
    return task


def task_from_records(
    records: Sequence[dict[str, Any]],
    cfg: "TaskConfig",
    seed: int,
    funcs: Sequence[Any] = (),
    weights: Sequence[float] = (),
    reward: "RewardConfig | None" = None,
    name: str = "dataset",
) -> Task:
    """A task over in-memory records (dicts, or a `datasets.Dataset`), read like a file's rows
    (`task.problem_field` etc. apply; a bad record fails naming `name:row N` and the field).

    >>> from dashrl.config import TaskConfig
    >>> def short(completions, **kwargs): return [float(len(c[0]["content"]) < 9) for c in completions]
    >>> t = task_from_records([{"prompt": [{"role": "user", "content": "Hi"}], "lang": "en"}], TaskConfig(), 0, [short])
    >>> t.get(0).messages, t.get(0).columns["lang"]
    ([{'role': 'user', 'content': 'Hi'}], 'en')
    """
    from dashrl.data.records import DatasetError, example_from_record

    loaded = _load_funcs(reward, funcs, weights)
    fields = {
        "problem": cfg.problem_field or None,
        "answer": cfg.answer_field or None,
        "tests": cfg.tests_field or None,
    }
    examples = []
    for number, record in enumerate(records, start=1):
        if cfg.limit and len(examples) >= cfg.limit:
            break
        if not isinstance(record, dict):
            raise DatasetError(f"{name}:row {number}: expected a dict of columns, got {type(record).__name__}")
        examples.append(
            example_from_record(dict(record), f"{name}:row {number}", name, fields, require_reference=not loaded)
        )
    return _finish(_from_examples(name, examples, seed), cfg, loaded)
