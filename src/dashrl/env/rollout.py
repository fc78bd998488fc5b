"""The multi-turn rollout: every trajectory of a step advances together, one `generate` call per turn
over the live ones; the tool calls of a turn run at once in threads; the environment's tokens are
appended after the model's (token in, token out) and masked out of training.

A trajectory is its prompt, then model tokens (trained, with the sampler's logprobs), environment
tokens (context: mask 0, logprob 0), model tokens, and so on. It ends when the model answers without a
tool call (and `env_response` has nothing to say), or at a limit (`Limits`), the reason in
`finish_reason`: "stop", "length" (a turn without tool calls hit `max_new_tokens`; one with calls goes
on, the template closing the turn), "max_turns", "max_tool_calls",
"max_tokens" (the per-trajectory budget of tokens after the prompt, model and environment together).

Seeds: turn t of a call seeded `seed` samples with `turn_seed(seed, t)`, a pure function, so a
resumed run samples what the uninterrupted one did, given environments that are deterministic in
the row and the seed `reset` gets.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from dashrl.env.calls import Answer, parse_calls, run_turn
from dashrl.env.chat import delta_ids, encode, env_messages, first_messages, render, supports_tools
from dashrl.env.loading import EnvSpec, reset, spec_tools
from dashrl.env.tools import EnvError


@dataclass(frozen=True)
class Limits:
    """When a trajectory ends though the model would go on (`dashrl.config.env.EnvConfig`)."""

    max_turns: int = 4  # model turns
    max_tool_calls: int = 8  # tool calls over the trajectory; a turn that would pass it ends the trajectory
    max_tokens: int = 1024  # tokens after the prompt, model and environment together
    tool_timeout: float = 10.0  # seconds a tool call may take before its answer is a timeout error


@dataclass(frozen=True)
class Turn:
    """One message of a trajectory after its prompt, as the sample log keeps it."""

    role: str  # "assistant", "tool" or "user" (the environment's text)
    text: str
    n_tokens: int
    trained: bool


@dataclass
class Trajectory:
    """One rollout: what `score_groups` grades (`token_ids`, `text`: the last model turn, `logprobs`,
    `finish_reason`), the per-token `mask` (1 model, 0 environment), its turns and tool counts."""

    prompt_ids: list[int]
    instance: Any = None
    tools: dict[str, Any] = field(default_factory=dict)
    schemas: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)  # the conversation as text
    token_ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    finish_reason: str = ""
    calls: dict[str, int] = field(default_factory=dict)  # per tool ("invalid": malformed calls, unknown tools)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return next((t.text for t in reversed(self.turns) if t.trained), "")

    @property
    def model_turns(self) -> int:
        return sum(t.trained for t in self.turns)

    @property
    def env_tokens(self) -> int:
        return len(self.mask) - sum(self.mask)


def turn_seed(seed: int, turn: int) -> int:
    """Seed of turn `turn` of the generate call seeded `seed` (turn 0 keeps it).

    >>> turn_seed(1011, 0), turn_seed(1011, 2)
    (1011, 16849)
    """
    return seed + 7_919 * turn


def example_row(example: Any) -> dict[str, Any]:
    """What `reset(**row)` gets for an example: its problem, answer and prompt messages, and the
    dataset record's columns (which win)."""
    return {"prompt": base_messages(example), "problem": example.problem, "answer": example.answer,
            **example.columns}  # fmt: skip


def base_messages(example: Any) -> list[dict[str, Any]]:
    """An example's chat messages before the environment adds to them (`dashrl.data.prompts`)."""
    from dashrl.data.prompts import prompt_text

    if example.messages is not None:
        return [dict(m) for m in example.messages]
    return [{"role": "user", "content": prompt_text(example)}]


def start(spec: EnvSpec, example: Any, seed: int, tokenizer: Any) -> Trajectory:
    """A new trajectory of `example`: a fresh instance, `reset` with the example's row and `seed`,
    its tools, and the prompt's token ids (the template's tools, or the system message's)."""
    instance = spec.factory() if spec.factory is not None else None
    extra = None
    if instance is not None:
        try:
            extra = reset(instance, example_row(example), seed)
        except Exception as e:  # noqa: BLE001 - user code: one line naming it
            raise EnvError(
                f"environment {spec.name}.reset raised {type(e).__name__}: {e} (record {example.id})"
            ) from None
    tools = spec_tools(instance, spec.tools)
    schemas = [t.schema for t in tools]
    native = supports_tools(tokenizer)
    messages = first_messages(base_messages(example), extra, schemas, native)
    prompt = encode(tokenizer, render(tokenizer, messages, schemas if native else None, True))
    return Trajectory(prompt, instance, {t.name: t.fn for t in tools}, schemas, messages)


def multi_turn(sampler: Any, params: Any, trajectories: Sequence[Trajectory], seed: int, limits: Limits,
               tokenizer: Any, start: int = 0) -> list[Trajectory]:  # fmt: skip
    """Run `trajectories` (from `start`) turn by turn until each has ended: one `sampler.generate`
    call per turn over the live ones (in order), then their tool calls at once. Returns them.
    `start` is the index of the first trajectory in its step (`Sampler.generate`'s; a Ray unit's)."""
    live = [t for t in trajectories if not t.finish_reason]
    turn = 0
    while live:
        room = [limits.max_tokens - len(t.token_ids) for t in live]
        p = replace(params, max_new_tokens=max(1, min(params.max_new_tokens, max(room))))
        outs = sampler.generate([t.prompt_ids + t.token_ids for t in live], p, turn_seed(seed, turn), start)
        jobs = [(t, _model_turn(t, c, r, limits, tokenizer)) for t, c, r in zip(live, outs, room)]
        pending = [(t, calls, stop) for t, (calls, stop) in jobs if calls is not None]
        answers = _run_tools([(calls, t.tools) for t, calls, _ in pending], limits.tool_timeout)
        for (t, _, stop), ans in zip(pending, answers):
            _append_env(t, [("tool", a.text) for a in ans], ans, stop, limits, tokenizer)
        live = [t for t in live if not t.finish_reason]
        turn += 1
    return list(trajectories)


def _model_turn(t: Trajectory, c: Any, room: int, limits: Limits, tokenizer: Any) -> tuple[Any, str]:
    """Append a sampled turn; returns (tool calls to run or None, the text of its stop token).
    A turn without calls asks `env_response` (if any), whose text is appended here."""
    ids, cut = list(c.token_ids[: max(room, 0)]), len(c.token_ids) > room
    text = tokenizer.decode(ids, skip_special_tokens=True) if cut else c.text
    t.token_ids += ids
    t.mask += [1] * len(ids)
    t.logprobs += list(c.logprobs[: len(ids)])
    t.turns.append(Turn("assistant", text, len(ids), True))
    t.messages.append({"role": "assistant", "content": text})
    stop = tokenizer.convert_ids_to_tokens(ids[-1]) if ids and c.finish_reason == "stop" else ""
    if cut:
        t.finish_reason = "max_tokens"
        return None, stop
    calls = parse_calls(text) if t.tools else []
    if c.finish_reason == "length" and not calls:  # cut mid-answer: the episode ends (a call still runs)
        t.finish_reason = "length"
        return None, stop
    if calls:
        if t.model_turns >= limits.max_turns:
            t.finish_reason = "max_turns"
        elif sum(t.calls.values()) + len(calls) > limits.max_tool_calls:
            t.finish_reason = "max_tool_calls"
        return (None if t.finish_reason else calls), stop
    reply = _env_response(t)
    if reply is None:
        t.finish_reason = "stop"
    elif t.model_turns >= limits.max_turns:
        t.finish_reason = "max_turns"
    else:
        _append_env(t, [("user", reply)], [], stop, limits, tokenizer)
    return None, stop


def _env_response(t: Trajectory) -> str | None:
    fn = getattr(t.instance, "env_response", None)
    if fn is None:
        return None
    try:
        out = fn([dict(m) for m in t.messages])
    except Exception as e:  # noqa: BLE001 - user code: one line naming it
        raise EnvError(f"environment {type(t.instance).__name__}.env_response raised {type(e).__name__}: {e}") from None
    return None if out is None else str(out)


def _run_tools(jobs: list[tuple[Any, Any]], timeout: float) -> list[list[Answer]]:
    if not jobs:
        return []
    pool = ThreadPoolExecutor(max_workers=min(32, sum(len(c) for c, _ in jobs)), thread_name_prefix="dashrl-tool")
    try:
        return run_turn(jobs, pool, timeout)
    finally:  # a call past its time limit is left to finish on its own; nothing waits on it
        pool.shutdown(wait=False, cancel_futures=True)


def _append_env(t: Trajectory, said: list[tuple[str, str]], answers: Sequence[Answer], stop: str, limits: Limits,
                tokenizer: Any) -> None:  # fmt: skip
    """Append the environment's messages (tool answers or its text) as untrained tokens, counting calls."""
    for a in answers:
        key = a.name if a.name in t.tools else "invalid"  # malformed calls, unknown tools: one key
        t.calls[key] = t.calls.get(key, 0) + 1
        t.errors[key] = t.errors.get(key, 0) + int(a.error)
    native = supports_tools(tokenizer)
    msgs = env_messages(said, native)
    ids = delta_ids(tokenizer, msgs, stop, t.schemas if native else None)
    if len(t.token_ids) + len(ids) >= limits.max_tokens:  # no room for them and a next turn
        t.finish_reason = "max_tokens"
        return
    t.token_ids += ids
    t.mask += [0] * len(ids)
    t.logprobs += [0.0] * len(ids)
    for role, text in said:
        t.messages.append({"role": role, "content": text})
    t.turns.append(Turn(said[0][0], "\n".join(text for _, text in said), len(ids), False))


def env_rewards(trajectories: Sequence[Trajectory], name: str) -> list[float] | None:
    """Each trajectory's `get_reward()` (None when the environment has none)."""
    from dashrl.env.loading import reward

    if not trajectories or trajectories[0].instance is None or not hasattr(trajectories[0].instance, "get_reward"):
        return None
    out = []
    for t in trajectories:
        try:
            out.append(reward(t.instance))
        except Exception as e:  # noqa: BLE001 - user code: one line naming it
            raise EnvError(f"environment {name}.get_reward raised {type(e).__name__}: {e}") from None
    return out


@dataclass(frozen=True)
class Counts:
    """What `env_metrics` reads of a trajectory; what a Ray sampler sends the driver (`counts`)."""

    calls: dict[str, int]
    errors: dict[str, int]
    model_turns: int
    finish_reason: str


def counts(t: Trajectory) -> dict[str, Any]:
    """A trajectory's tool and turn counts as plain values (`Counts(**counts(t))` on the driver)."""
    return {"calls": dict(t.calls), "errors": dict(t.errors), "model_turns": t.model_turns,
            "finish_reason": t.finish_reason}  # fmt: skip


def env_metrics(trajectories: Sequence[Trajectory | Counts]) -> dict[str, float]:
    """Tool calls and errors (in all and per tool), turns, and how trajectories ended, per trajectory.

    >>> t = Trajectory([1], finish_reason="stop", calls={"add": 2, "invalid": 1}, errors={"add": 0, "invalid": 1})
    >>> env_metrics([t, Trajectory([1], finish_reason="max_turns")])["env/tool_errors"]
    0.5
    """
    n = len(trajectories)
    out = {
        "env/tool_calls": sum(sum(t.calls.values()) for t in trajectories) / n,
        "env/tool_errors": sum(sum(t.errors.values()) for t in trajectories) / n,
        "env/turns": sum(t.model_turns for t in trajectories) / n,
    }
    for name in sorted({k for t in trajectories for k in t.calls}):
        out[f"env/tool_calls/{name}"] = sum(t.calls.get(name, 0) for t in trajectories) / n
        out[f"env/tool_errors/{name}"] = sum(t.errors.get(name, 0) for t in trajectories) / n
    for reason in sorted({t.finish_reason for t in trajectories}):
        out[f"env/finish/{reason}"] = sum(t.finish_reason == reason for t in trajectories) / n
    return out


def env_limits(cfg: Any) -> Limits:
    """The `[env]` section's limits (`dashrl.config.env.EnvConfig`)."""
    e = cfg.env
    return Limits(e.max_turns, e.max_tool_calls, e.max_tokens, e.tool_timeout)


def reset_seed(seed: int, group: int) -> int:
    """The seed `reset` gets: one per group (its G rollouts start alike), a pure function of the
    sampling call's seed and the group's index in the step.

    >>> reset_seed(1011, 3)
    1014
    """
    return seed + group


def grade_with_env(grade: Any, name: str, examples: Sequence[Any], trajectories: Sequence[Trajectory]) -> Any:
    """`grade`'s scores (a `dashrl.rewards.funcs.Scored`) with each trajectory's `get_reward()` added
    (weight 1) as the function `name`; an environment that raises names its records."""
    scored = grade(examples, trajectories)
    try:
        own = env_rewards(trajectories, name)
    except EnvError as e:
        ids = list(dict.fromkeys(str(ex.id) for ex in examples))
        raise EnvError(f"{e} (records {', '.join(ids[:4])}{', ...' if len(ids) > 4 else ''})") from None
    return with_env_rewards(scored, own, name)


def with_env_rewards(scored: Any, own: Sequence[float] | None, name: str) -> Any:
    """`scored` (a `dashrl.rewards.funcs.Scored`) with the environment's rewards `own` added, weight 1,
    and kept apart as the function `name` (`reward/<ClassName>`); as it is when `own` is None."""
    from dashrl.rewards.funcs import Scored

    if own is None:
        return scored
    total = [r + o for r, o in zip(scored.rewards, own)]
    return Scored(total, {**scored.per_func, name: list(own)}, scored.correct)
