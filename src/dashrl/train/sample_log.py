"""What the model wrote: a few groups per step in `RUN/samples.jsonl`, bounded in size.

One JSON line per logged group: the step, the group index, the prompt as the model saw it
(chat template and special tokens included), and per completion its text, reward (the
weighted sum), each reward function's value, the task's own check (`correct`), advantage,
whether the gradient filter kept it, its token count and finish reason. The first
`run.sample_groups` groups of each step are logged (they are the step's first prompts, so
a group is as likely as any to show learning); the file stops growing at `run.sample_log_mb`
MiB. A resume drops the lines after the checkpoint's step, as for `metrics.jsonl`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

SAMPLES_FILE = "samples.jsonl"


def kept_mask(advantages: Sequence[float], threshold: float | None) -> list[bool]:
    """Which samples the gradient filter keeps (`dashrl.algo.gradient_filter`); None = no filter.

    >>> kept_mask([0.0, 0.5, -1.0], 0.01), kept_mask([0.0], None)
    ([False, True, True], [True])
    """
    if threshold is None or threshold < 0:
        return [True] * len(advantages)
    return [abs(a) > threshold for a in advantages]


def group_records(
    step: int, samples: Sequence[Any], groups: int, threshold: float | None, decode: Any
) -> list[dict[str, Any]]:
    """The log lines of one step: its first `groups` groups (Sample or SampleRef with `info`).

    >>> from dashrl.rollout.samples import SampleRef
    >>> s = [SampleRef(0, i, r, r - 0.5, 3, "stop",
    ...                info={"text": t, "prompt_ids": [7], "rewards": {"fmt": r}, "correct": r})
    ...      for i, (r, t) in enumerate([(1.0, "yes"), (0.0, "no")])]
    >>> rec = group_records(5, s, 1, 0.01, lambda ids: "P")[0]
    >>> rec["prompt"], [(c["text"], c["advantage"], c["kept"], c["rewards"]) for c in rec["completions"]]
    ('P', [('yes', 0.5, True, {'fmt': 1.0}), ('no', -0.5, True, {'fmt': 0.0})])
    """
    by_group: dict[int, list[Any]] = {}
    for s in samples:
        if s.info and (s.group in by_group or len(by_group) < groups):
            by_group.setdefault(s.group, []).append(s)
    out = []
    for g, members in by_group.items():
        kept = kept_mask([s.advantage for s in members], threshold)
        out.append({
            "step": step,
            "group": g,
            "prompt": decode(members[0].info.get("prompt_ids", [])),
            "completions": [
                {"text": s.info.get("text", ""), "reward": s.reward, "rewards": s.info.get("rewards", {}),
                 "correct": s.info.get("correct"), "advantage": s.advantage, "kept": k,
                 "tokens": s.num_tokens, "finish_reason": s.finish_reason,
                 **({"turns": s.info["turns"]} if "turns" in s.info else {})}
                for s, k in zip(members, kept)
            ],
        })  # fmt: skip
    return out


class SampleLog:
    """Appends `group_records` to `RUN/samples.jsonl` until the file reaches `max_mb` MiB.

    >>> log = SampleLog(Path("runs/x"), groups=2, max_mb=20, tokenizer=tok, threshold=0.01)  # doctest: +SKIP
    >>> log.write(1, rollouts.samples)  # the records written  # doctest: +SKIP
    """

    def __init__(self, run_dir: Path, groups: int, max_mb: float, tokenizer: Any, threshold: float | None):
        self.path = Path(run_dir) / SAMPLES_FILE
        self.groups, self.max_bytes, self.threshold = groups, int(max_mb * 2**20), threshold
        self.tokenizer = tokenizer
        self.size = self.path.stat().st_size if self.path.is_file() else 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False) if ids else ""

    def write(self, step: int, samples: Sequence[Any] | None) -> list[dict[str, Any]]:
        """Log `samples`' first groups for `step`; returns the records written."""
        if not samples or self.groups == 0 or (self.max_bytes and self.size >= self.max_bytes):
            return []
        records = group_records(step, samples, self.groups, self.threshold, self._decode)
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as e:  # the log is a window on the run, never a reason to stop it
            print(
                f"[dashrl] warning: cannot write {self.path} ({e.strerror or e}); no more samples are logged",
                file=sys.stderr,
            )
            self.groups = 0
            return []
        self.size += len(text.encode("utf-8"))
        return records


def read_samples(path: Path, limit: int = 3) -> list[dict[str, Any]]:
    """The last `limit` logged groups of `samples.jsonl` (torn lines skipped).

    >>> read_samples(Path("runs/sums/samples.jsonl"), 2)[-1]["completions"][0]["text"]  # doctest: +SKIP
    'The answer is \\boxed{7}.'
    """
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "completions" in rec:
            out.append(rec)
    return out[-limit:] if limit else out


def turns_text(completion: dict[str, Any]) -> str:
    """A logged completion as text: its text, or a multi-turn trajectory's turns, each under its role
    (an environment's turns marked as context, not trained on).

    >>> turns_text({"text": "5", "turns": [{"role": "assistant", "text": "<tool_call>..", "trained": True},
    ...     {"role": "tool", "text": "5", "trained": False}, {"role": "assistant", "text": "5", "trained": True}]})
    '[assistant] <tool_call>.. [tool, context] 5 [assistant] 5'
    """
    turns = completion.get("turns")
    if not turns:
        return completion.get("text", "")
    return " ".join(f"[{t['role']}{'' if t['trained'] else ', context'}] {t['text']}" for t in turns)


def markdown_table(records: Sequence[dict[str, Any]], width: int = 200) -> str:
    """The logged groups as one markdown table (TensorBoard text, `dashrl report`).

    >>> print(markdown_table([{"step": 1, "group": 0, "prompt": "Q", "completions": [
    ...     {"text": "A|B", "reward": 1.0, "advantage": 0.5, "kept": True, "rewards": {}}]}]))
    | step | group | prompt | completion | reward | advantage | kept |
    |---|---|---|---|---|---|---|
    | 1 | 0 | Q | A\\|B | 1 | 0.5 | yes |
    """

    def cell(text: str) -> str:
        text = " ".join(str(text).split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    lines = ["| step | group | prompt | completion | reward | advantage | kept |", "|---|---|---|---|---|---|---|"]
    for r in records:
        for i, c in enumerate(r["completions"]):
            prompt = cell(r["prompt"][-width:]) if i == 0 else ""
            lines.append(
                f"| {r['step']} | {r['group']} | {prompt} | {cell(turns_text(c))} | {c['reward']:.3g} | "
                f"{c['advantage']:.3g} | {'yes' if c['kept'] else 'no'} |"
            )
    return "\n".join(lines)
