"""`dashrl.train(...)`: the Python entry point, with the CLI's validation and one-line errors.

    import dashrl
    result = dashrl.train({"train.steps": 2}, dataset=rows, reward_funcs=[fmt], reward_weights=[0.5])
    result.run_dir, result.rows[-1]["reward/mean"]

Reward callables follow TRL's convention (`dashrl.rewards.funcs`). They live in this process
only: the run folder's `config.toml` records `[reward]` names but not callables, so resuming a
run trained with callables is `dashrl.train(..., resume=True)` with the same callables.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence


@contextlib.contextmanager
def environment_kept() -> Iterator[None]:
    """Give `os.environ` back as it was when the block ends, by return or by exception.

    A run sets variables for itself and the child processes it starts: the OpenMP wait policy,
    `CUBLAS_WORKSPACE_CONFIG`, a `train.cpu_isa` cap, vLLM's settings. Inside the caller's own
    process (`dashrl.train`) they are undone afterwards, and so is any change a reward function made;
    what torch's libraries read when they loaded stays as they read it.

    >>> with environment_kept():
    ...     os.environ["DASHRL_EXAMPLE"] = "1"
    >>> "DASHRL_EXAMPLE" in os.environ
    False
    """
    saved = dict(os.environ)
    try:
        yield
    finally:
        for k in [k for k in os.environ if k not in saved]:
            del os.environ[k]
        for k, v in saved.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


def config_from(overrides: Any = None) -> Any:
    """A `Config` from a dict of `"section.field": value`, a `Config`, or a TOML path (None = defaults).

    >>> config_from({"train.steps": 3, "algo.group_size": 4}).train.steps
    3
    """
    from dashrl.config import Config, ConfigError, build_config, load_config

    if overrides is None:
        return load_config()
    if isinstance(overrides, Config):
        return overrides
    if isinstance(overrides, (str, os.PathLike)):
        return load_config(Path(overrides))
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            "overrides: expected a dict of 'section.field': value, a Config or a TOML path, got "
            f"{type(overrides).__name__}"
        )
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        sec, dot, name = str(key).partition(".")
        if not dot:
            raise ConfigError(f"overrides: expected 'section.field' keys, got {key!r}")
        nested.setdefault(sec, {})[name] = value
    return build_config(nested)


def train(
    overrides: Any = None,
    *,
    dataset: Sequence[Mapping[str, Any]] | Any = None,
    reward_funcs: Sequence[Any] = (),
    reward_weights: Sequence[float] = (),
    resume: bool | None = None,
    model: Any = None,
    tokenizer: Any = None,
    environment_factory: Any = None,
    tools: Sequence[Any] = (),
) -> Any:
    """Train as `dashrl train` does; returns the run's `RunResult` (`run_dir`, `rows`: the metric rows).

    `dataset`: a list of dicts or a `datasets.Dataset` (None = `task.name`; given, the run's
    `task.name` is `dataset` unless set, and `task.*_field` and `task.limit` apply to it); `reward_funcs`:
    callables in TRL's convention or `[reward]` names, after any in `reward.funcs`;
    `reward_weights`: one per callable (default 1). A reward function that raises stops the
    run with an exception whose first line names it; the checkpoints already written stay.
    `environment_factory` (a class in TRL's convention) and `tools` (functions) make the rollouts
    multi-turn, as `[env]`'s `factory` and `tools` do (docs/environments.md); like reward callables,
    they live in this process only.

    >>> import dashrl
    >>> def short(completions, **kwargs): return [1.0 if len(c) < 20 else 0.0 for c in completions]
    >>> result = dashrl.train({"train.steps": 1}, dataset=[{"prompt": "Say hi"}],
    ...                       reward_funcs=[short])  # doctest: +SKIP
    >>> result.rows[-1]["reward/short"]  # doctest: +SKIP
    0.25

    The OpenMP settings the run chooses (`dashrl.runtime.openmp`) are set before torch loads (the
    caller's own `import torch` first leaves them unchanged; the log says so). When this returns or
    raises, `os.environ` is as it was before the call (`environment_kept`): the caller's later child
    processes start as before.
    """
    from dashrl.runtime import openmp

    with environment_kept():
        openmp.apply()  # before torch loads
        env = (environment_factory, tuple(tools))
        return _train(overrides, dataset, reward_funcs, reward_weights, resume, model, tokenizer, env)


def _train(
    overrides: Any,
    dataset: Any,
    reward_funcs: Sequence[Any],
    reward_weights: Sequence[float],
    resume: bool | None,
    model: Any,
    tokenizer: Any,
    env: tuple[Any, tuple[Any, ...]] = (None, ()),
) -> Any:
    """`train`'s body, with the OpenMP settings in place; `env`: the environment class and tools given."""
    from dashrl.data.tasks import make_task, task_from_records
    from dashrl.rewards.funcs import RewardError
    from dashrl.train.loop import RunError
    from dashrl.train.loop import train as run_loop

    if (
        dataset is not None
        and (overrides is None or isinstance(overrides, Mapping))
        and "task.name" not in (overrides or {})
    ):
        overrides = {**(overrides or {}), "task.name": "dataset"}  # the records, not the default procedural task
    cfg = config_from(overrides)
    try:
        if dataset is not None:
            task = task_from_records(dataset, cfg.task, cfg.train.seed, reward_funcs, reward_weights, reward=cfg.reward)
        else:
            task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward, funcs=reward_funcs, weights=reward_weights)
    except RewardError as e:
        raise RunError(str(e)) from None
    if env[0] is not None or env[1]:
        task = with_env(task, cfg, *env)
    return run_loop(cfg, model=model, tokenizer=tokenizer, task=task, resume=resume)


def with_env(task: Any, cfg: Any, factory: Any, tools: Sequence[Any]) -> Any:
    """`task` carrying the environment given in Python (checked: one `RunError` line)."""
    from dataclasses import replace

    from dashrl.env.loading import env_spec
    from dashrl.env.tools import EnvError
    from dashrl.train.loop import RunError

    try:
        return replace(task, env=env_spec(cfg.env, factory, tuple(tools)))
    except EnvError as e:
        raise RunError(str(e)) from None
