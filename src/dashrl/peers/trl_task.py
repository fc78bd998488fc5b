"""A user's task (data + TRL-convention reward functions) through TRL's own `GRPOTrainer`.

The same command line as `dashrl train`, so one task runs through both with the same settings:

    python -m dashrl.peers.trl_task --task.name sums.parquet \\
        --reward.funcs my_rewards.py:correct_reward,my_rewards.py:format_reward --reward.weights 1,0.2 \\
        --train.steps 20 --run.name sums-trl

The reward functions are loaded by dashrl's registry and handed to TRL unchanged (with
`reward_weights`); the dataset is the task's records in the order dashrl draws them (so both
see the same prompts at each step), chat prompts as message lists, which TRL renders with the
same chat template. Plain-text problems are rendered as dashrl renders them. The GRPOConfig is
`dashrl.peers.trl_grpo.grpo_args` (generation batch = one optimizer step, as DASH samples).
Writes `RUN/trl_metrics.jsonl`: per optimizer step TRL's logged reward, each function's mean,
and the wall-clock seconds since training began (start-up left out), for a time-to-reward
comparison with `dashrl train`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence


def ordered_records(task: Any, steps: int, per_step: int, tokenizer: Any, env: bool = False) -> list[dict[str, Any]]:
    """The records of steps 0..steps-1 in dashrl's order: `prompt` as TRL takes it (messages, or
    the text dashrl renders for a plain problem), every other column as it is. With an environment
    (`env`), each row is what dashrl's `reset(**row)` gets (`dashrl.env.rollout.example_row`: the
    prompt as messages, the problem, the answer and the record's columns); TRL passes a row to
    `reset` whole.

    >>> ordered_records(make_task(cfg.task, 0, reward=cfg.reward), steps=2, per_step=8,
    ...                 tokenizer=tok)[0]["prompt"]  # doctest: +SKIP
    [{'role': 'user', 'content': 'What is 3 + 5?'}]
    """
    from dashrl.data.prompts import prompt_string
    from dashrl.env.rollout import example_row

    rows = []
    for ex in (ex for s in range(steps) for ex in task.batch(s, per_step)):
        if env:  # TRL's environments take chat prompts: the messages and row dashrl's rollout starts from
            rows.append(example_row(ex))
            continue
        cols = {k: v for k, v in (ex.columns or {"answer": ex.answer}).items() if k != "prompt"}
        rows.append({**cols, "prompt": ex.messages if ex.messages is not None else prompt_string(tokenizer, ex)})
    return rows


def run_trl(cfg: Any, model: Any = None, tokenizer: Any = None, trl_extra: dict[str, Any] | None = None) -> Path:
    """Train `cfg`'s task with TRL's GRPOTrainer (`trl_extra`: more `GRPOConfig` fields); returns the
    path of `trl_metrics.jsonl`.

    >>> run_trl(load_config(None, ["--task.name", "sums.parquet",
    ...                            "--reward.funcs", "my_rewards.py:correct_reward"]))  # doctest: +SKIP
    PosixPath('runs/trl/trl_metrics.jsonl')
    """
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    from dashrl.data.tasks import make_task
    from dashrl.env.loading import env_spec
    from dashrl.peers.trl_grpo import grpo_args

    task = make_task(cfg.task, cfg.train.seed, reward=cfg.reward)
    if not task.funcs:
        raise SystemExit("dashrl.peers.trl_task: give the reward functions with --reward.funcs")
    env = env_spec(cfg.env)
    if env:  # TRL calls environment_factory experimental and says so at every start; the bench knows
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if model is None:
        from dashrl.models import load_model

        model, tokenizer = load_model(cfg.model.name, attn=cfg.model.attn, chat_template=cfg.model.chat_template)
    else:
        from dashrl.models import read_chat_template, use_chat_template

        use_chat_template(tokenizer, read_chat_template(cfg.model.chat_template))
    run_dir = Path(cfg.run.out_dir) / (cfg.run.name or "trl")
    run_dir.mkdir(parents=True, exist_ok=True)
    data = Dataset.from_list(
        ordered_records(task, cfg.train.steps, cfg.algo.prompts_per_step, tokenizer, env=bool(env))
    )
    args = grpo_args(
        cfg,
        cfg.train.steps,
        cfg.algo.samples_per_step,
        str(run_dir / "trl"),
        reward_weights=[f.weight for f in task.funcs],
        **(env_args(cfg.env) if env else {}),
        **(trl_extra or {}),
    )
    out = run_dir / "trl_metrics.jsonl"
    trainer = GRPOTrainer(
        model=model, reward_funcs=[f.fn for f in task.funcs], args=args, train_dataset=data, processing_class=tokenizer,
        environment_factory=env.factory if env else None, tools=list(env.tools) if env and env.tools else None,
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(metrics_logger(out))
    trainer.train()
    return out


def env_args(env: Any) -> dict[str, Any]:
    """TRL's settings for dashrl's `[env]` limits: `max_turns` model turns are `max_turns - 1` tool
    rounds, and `max_tokens` (the trajectory's tokens after the prompt, the model's and the tools')
    is TRL's completion length, which counts the same tokens; TRL has no cap per model turn.

    >>> from dashrl.config.env import EnvConfig
    >>> env_args(EnvConfig(name="calculator", max_turns=2, max_tokens=192))
    {'max_tool_calling_iterations': 1, 'max_completion_length': 192}
    """
    return {"max_tool_calling_iterations": env.max_turns - 1, "max_completion_length": env.max_tokens}


def shared_tool_template(cfg: Any) -> str:
    """The chat template both sides of a comparison with an environment use: "" where the model's
    own renders a tool-calling conversation (TRL's `supports_tool_calling`) or `cfg` names one, else
    the path of the Qwen2.5 template that TRL ships and parses tool calls for. Qwen2.5 and SmolLM2
    write turns with the same ChatML tokens, so SmolLM2's tokenizer renders it unchanged; without
    it, TRL refuses SmolLM2's template (docs/environments.md)."""
    if not cfg.env.enabled or cfg.model.chat_template:
        return ""
    import trl
    from transformers import AutoTokenizer
    from trl.chat_template_utils import supports_tool_calling

    from dashrl.models import resolve_model_path

    if supports_tool_calling(AutoTokenizer.from_pretrained(resolve_model_path(cfg.model.name))):
        return ""
    return str(Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja")


def metrics_row(step: int, elapsed: float, logs: dict[str, Any]) -> dict[str, Any] | None:
    """The `trl_metrics.jsonl` row of one of TRL's logs, in dashrl's metric names; None for a log
    without a reward.

    >>> metrics_row(3, 1.5, {"reward": 0.5, "rewards/correct/mean": 0.25, "rewards/correct/std": 0.1})
    {'step': 3, 'time/elapsed_s': 1.5, 'reward/mean': 0.5, 'reward/correct': 0.25}
    >>> metrics_row(1, 2.0, {"reward": 0.1, "tools/call_frequency": 0.75})["env/tool_calls"]
    0.75
    """
    if "reward" not in logs:
        return None
    row = {"step": step, "time/elapsed_s": elapsed, "reward/mean": logs["reward"]}
    if "tools/call_frequency" in logs:  # tool calls per trajectory, as dashrl's env/tool_calls
        row["env/tool_calls"] = logs["tools/call_frequency"]
    row.update(
        {f"reward/{k.split('/')[1]}": v for k, v in logs.items() if k.startswith("rewards/") and k.endswith("/mean")}
    )
    return row


def metrics_logger(out: Path) -> Any:
    """A TrainerCallback that appends each reward log to `out` (`metrics_row`), timed from the
    start of training: TRL's start-up is left out, as dashrl's `time/elapsed_s` leaves out its own."""
    from transformers import TrainerCallback

    class MetricsLogger(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            row = metrics_row(state.global_step, time.perf_counter() - self.t0, logs) if logs else None
            if row is not None:
                with open(out, "a") as handle:
                    handle.write(json.dumps(row) + "\n")

    return MetricsLogger()


def main(argv: Sequence[str] | None = None) -> int:
    from dashrl.config import load_config

    args, extra = trl_options(list(sys.argv[1:] if argv is None else argv))
    path = None
    if args[:1] == ["--config"]:
        path, args = args[1], args[2:]
    print(run_trl(load_config(path, args), trl_extra=extra))
    return 0


def trl_options(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Take the `--trl-option KEY=VALUE` pairs (TRL `GRPOConfig` fields, VALUE read as JSON, else as
    a string) out of `argv`: the rest, and the fields.

    >>> trl_options(["--train.steps", "3", "--trl-option", "use_transformers_continuous_batching=true",
    ...              "--trl-option", "cache_implementation=static"])
    (['--train.steps', '3'], {'use_transformers_continuous_batching': True, 'cache_implementation': 'static'})
    """
    rest, extra = [], {}
    it = iter(argv)
    for arg in it:
        if arg != "--trl-option":
            rest.append(arg)
            continue
        key, eq, value = next(it, "").partition("=")
        if not key or not eq:
            raise SystemExit(f"dashrl.peers.trl_task: --trl-option expects KEY=VALUE, got {value or key!r}")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    return rest, extra


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
