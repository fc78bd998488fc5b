"""Reward functions in TRL's calling convention: a registry, loading by name, weighted scoring.

A reward function is called once per batch as

    fn(prompts=[...], completions=[...], completion_ids=[...], **columns) -> [float | None, ...]

exactly as TRL's `GRPOTrainer(reward_funcs=...)` calls it, so a function written for TRL runs
unchanged: `prompts` holds each sample's prompt as the dataset gave it (a chat message list or
the problem text), `completions` the sampled text (for chat prompts a one-message list
`[{"role": "assistant", "content": text}]`), `completion_ids` the sampled token ids, and every
dataset column arrives as a keyword holding one value per sample (`prompt` itself excepted, as
in TRL). `answer` and `tests` hold the references the task's own check grades against (after
`--task.answer_field` / `--task.tests_field` mapping). A function returns one float per sample,
or None where it does not apply.

The reward of a sample is the weighted sum over functions, None counting as 0 (as TRL does);
each function's mean over the samples it applies to is logged as `reward/<name>`. `async def`
functions are awaited (each call on its own event loop). The step number is not passed.

Names: a built-in (`REWARD_FUNCS`: `math`, `code`, `integer`), `package.module:function`, or
`path/to/file.py:function`. No trainer imports here; the built-ins import their graders lazily.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from dashrl.runtime.user_code import UserCodeError, load


class RewardError(ValueError):
    """A reward function that cannot be loaded or returned something unusable; one line names it.

    >>> try:
    ...     load_reward_fn("nope")
    ... except RewardError as e:
    ...     print(str(e).split(";")[0])
    unknown reward function 'nope'
    """


def _text(completion: Any) -> str:
    """A completion as text: a string, or the content of a chat message list's last assistant
    message (a multi-turn completion, as TRL passes one, may end with a tool's answer).

    >>> _text([{"role": "assistant", "content": "It is 7."}, {"role": "tool", "content": "8"}])
    'It is 7.'
    """
    if isinstance(completion, str):
        return completion
    said = [m for m in completion if m.get("role", "assistant") == "assistant"]
    return str(said[-1].get("content") or "") if said else ""


def math_reward_fn(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when the final answer matches `answer` by math equivalence, else 0.0 (None without an answer).

    >>> math_reward_fn(["so \\\\boxed{4}", "it is 5"], ["4", "4"])
    [1.0, 0.0]
    """
    from dashrl.rewards.math_grading import math_reward

    return [None if a is None else math_reward(_text(c), str(a)) for c, a in zip(completions, answer)]


def code_reward_fn(completions: Sequence[Any], tests: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """1.0 when the program in the completion passes `tests` in the sandbox, else 0.0 (None without tests).

    >>> code_reward_fn(["```python\\nx = 1\\n```"], ["assert x == 1"])
    [1.0]
    """
    from dashrl.rewards.code import code_rewards

    idx = [i for i, t in enumerate(tests) if t is not None]
    out: list[float | None] = [None] * len(completions)
    for i, score in zip(idx, code_rewards([_text(completions[i]) for i in idx], [str(tests[i]) for i in idx])):
        out[i] = score
    return out


def integer_reward_fn(completions: Sequence[Any], answer: Sequence[Any], **kwargs: Any) -> list[float | None]:
    """The procedural tasks' check: 1.0 when the final answer is the integer `answer`.

    >>> integer_reward_fn(["9 * 3 = 27.", "28"], ["27", "27"])
    [1.0, 0.0]
    """
    from dashrl.rewards.integer import integer_reward

    return [None if a is None else integer_reward(_text(c), str(a)) for c, a in zip(completions, answer)]


REWARD_FUNCS: dict[str, Callable[..., list[float | None]]] = {
    "math": math_reward_fn,
    "code": code_reward_fn,
    "integer": integer_reward_fn,
}


@dataclass(frozen=True)
class RewardFn:
    """One reward function of a run: its name (as logged), the callable and its weight.

    >>> RewardFn("fmt", lambda completions, **kw: [1.0] * len(completions), 0.5).weight
    0.5
    """

    name: str
    fn: Callable[..., Any]
    weight: float = 1.0


def load_reward_fn(spec: str) -> Callable[..., Any]:
    """The callable a `--reward.funcs` entry names: a built-in, `module:function` or `file.py:function`.

    >>> load_reward_fn("math") is math_reward_fn, load_reward_fn("os.path:basename").__name__
    (True, 'basename')
    """
    spec = spec.strip()
    if spec in REWARD_FUNCS:
        return REWARD_FUNCS[spec]
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        close = difflib.get_close_matches(spec, list(REWARD_FUNCS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RewardError(
            f"unknown reward function {spec!r}{hint}; valid: {', '.join(REWARD_FUNCS)}, module:function or "
            "path/to/file.py:function"
        )
    try:
        fn = load(spec, "reward function")  # files and modules alike (dashrl.runtime.user_code)
    except UserCodeError as e:
        raise RewardError(str(e)) from None
    if not callable(fn):
        raise RewardError(f"reward function {spec!r}: {attr!r} is a {type(fn).__name__}, not a function")
    return fn


def fn_name(fn: Callable[..., Any]) -> str:
    """The name a function is logged under: its `__name__` (TRL's rule), else its class name."""
    return getattr(fn, "__name__", None) or type(fn).__name__


def reward_funcs(funcs: Sequence[Any], weights: Sequence[float] = ()) -> tuple[RewardFn, ...]:
    """Callables or names (`load_reward_fn`) with their weights (default all 1) as `RewardFn`s.

    Names must be unique, as each is a metric key (`reward/<name>`).

    >>> [(f.name, f.weight) for f in reward_funcs(["math", "integer"], [1.0, 0.5])]
    [('math', 1.0), ('integer', 0.5)]
    """
    weights = list(weights) or [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise RewardError(f"{len(funcs)} reward functions but {len(weights)} weights; give one weight per function")
    out, seen = [], set()
    for f, w in zip(funcs, weights):
        name = f.strip() if isinstance(f, str) and f.strip() in REWARD_FUNCS else None
        fn = load_reward_fn(f) if isinstance(f, str) else f
        if not callable(fn):
            raise RewardError(f"reward function {f!r} is not callable")
        name = name or fn_name(fn)
        if name in ("mean", "std"):
            raise RewardError(
                f"reward function name {name!r} clashes with the metric reward/{name}; rename the function"
            )
        if name in seen:
            raise RewardError(f"reward function name {name!r} appears twice; each is logged as reward/<name>")
        if not math.isfinite(float(w)):
            raise RewardError(f"reward function {name!r}: weight {w!r} is not a finite number")
        seen.add(name)
        out.append(RewardFn(name, fn, float(w)))
    return tuple(out)


def check_signature(funcs: Sequence[RewardFn], columns: Sequence[str]) -> None:
    """Fail in one line unless every function can be called with the convention's keywords
    (`prompts`, `completions`, `completion_ids` and each of `columns`).

    >>> def fmt(completions, **kwargs): return [0.0] * len(completions)
    >>> check_signature(reward_funcs([fmt]), ["answer"])
    >>> def bad(text): return [0.0]
    >>> try:
    ...     check_signature(reward_funcs([bad]), ["answer"])
    ... except RewardError as e:
    ...     print(str(e).split(";")[0])
    reward function 'bad' cannot take the call fn(prompts=, completions=, completion_ids=, answer=) (missing a required argument: 'text')
    """  # noqa: E501 (the expected output above is one line)
    keys = ["prompts", "completions", "completion_ids", *[c for c in columns if c != "prompt"]]
    for f in funcs:
        try:
            sig = inspect.signature(f.fn)
        except (TypeError, ValueError):  # a builtin without a signature: tried at the first call
            continue
        try:
            sig.bind(**dict.fromkeys(keys))
        except TypeError as e:
            call = ", ".join(f"{k}=" for k in keys)
            raise RewardError(
                f"reward function {f.name!r} cannot take the call fn({call}) ({e}); "
                f"declare the keywords it uses and **kwargs for the rest"
            ) from None


def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    out = fn(**kwargs)
    if not inspect.isawaitable(out):
        return out
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # the usual case: no event loop in this thread
        return asyncio.run(_awaited(out))
    import concurrent.futures  # called from inside an event loop (a notebook): await it on a thread of its own

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _awaited(out)).result()


async def _awaited(aw: Any) -> Any:
    return await aw


@dataclass
class Scored:
    """The rewards of a batch: the weighted sum per sample, each function's values (None where
    it did not apply), and the task's own correctness check (None where there is none).

    >>> Scored([1.5, 0.0], {"fmt": [0.5, None], "integer": [1.0, 0.0]}, [1.0, 0.0]).rewards
    [1.5, 0.0]
    """

    rewards: list[float]
    per_func: dict[str, list[float | None]]
    correct: list[float | None] | None = None


def _check_values(name: str, values: Any, n: int, where: Callable[[int], str]) -> list[float | None]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise RewardError(f"reward function {name!r} returned {type(values).__name__}, expected a list of {n} floats")
    if len(values) != n:
        raise RewardError(
            f"reward function {name!r} returned {len(values)} values for {n} completions ({where(0)} ...)"
        )
    out: list[float | None] = []
    for i, v in enumerate(values):
        if v is None:
            out.append(None)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            raise RewardError(
                f"reward function {name!r} returned {v!r} ({type(v).__name__}) for {where(i)}; expected a float or None"
            )
        x = float(v)
        if not math.isfinite(x):
            raise RewardError(f"reward function {name!r} returned {x} for {where(i)}; expected a finite float or None")
        out.append(x)
    return out


def score(
    funcs: Sequence[RewardFn],
    prompts: Sequence[Any],
    completions: Sequence[Any],
    completion_ids: Sequence[Sequence[int]],
    columns: Mapping[str, Sequence[Any]],
    where: Callable[[int], str] = lambda i: f"sample {i}",
) -> tuple[list[float], dict[str, list[float | None]]]:
    """Call every function once on the batch; returns the weighted sums (None = 0) and each
    function's checked values. Raises RewardError naming the function and `where(i)` (the record).

    >>> def half(completions, **kw): return [0.5 if "x" in c else None for c in completions]
    >>> score(reward_funcs(["integer", half], [1.0, 2.0]), ["p", "p"], ["x = 3", "4"], [[1], [2]],
    ...       {"answer": ["3", "3"]})
    ([2.0, 0.0], {'integer': [1.0, 0.0], 'half': [0.5, None]})
    """
    n = len(completions)
    kwargs = {
        "prompts": list(prompts),
        "completions": list(completions),
        "completion_ids": [list(c) for c in completion_ids],
    }
    kwargs.update({k: list(v) for k, v in columns.items() if k != "prompt"})
    per_func: dict[str, list[float | None]] = {}
    total = [0.0] * n
    for f in funcs:
        try:
            values = _call(f.fn, kwargs)
        except RewardError:
            raise
        except Exception as e:  # noqa: BLE001 - user code: name the function, keep the cause chained
            raise RewardError(
                f"reward function {f.name!r} raised {type(e).__name__}: {e} (batch from {where(0)})"
            ) from e
        checked = _check_values(f.name, values, n, where)
        per_func[f.name] = checked
        total = [t + f.weight * (v or 0.0) for t, v in zip(total, checked)]
    return total, per_func


def func_means(per_func: Mapping[str, Sequence[float | None]]) -> dict[str, float]:
    """`reward/<name>`: each function's mean over the samples it applied to (absent if none).

    >>> func_means({"fmt": [1.0, None, 0.0], "never": [None]})
    {'reward/fmt': 0.5}
    """
    out = {}
    for name, values in per_func.items():
        got = [v for v in values if v is not None]
        if got:
            out[f"reward/{name}"] = sum(got) / len(got)
    return out


__all__ = [
    "REWARD_FUNCS", "RewardError", "RewardFn", "Scored", "check_signature", "code_reward_fn", "fn_name",
    "func_means", "integer_reward_fn", "load_reward_fn", "math_reward_fn", "reward_funcs", "score",
]  # fmt: skip
