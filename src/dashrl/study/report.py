"""`DIR/report.md`: which arm is which, the results table, one table per finding, the figures."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from dashrl.study.findings import MARGIN, ArmResult
from dashrl.study.tables import arms_table, findings, render_finding, results_table

FLAGS = {
    "base": "(no training)",
    "dash": "--algo.name dash --algo.beta {beta}",
    "dash_nokl": "--algo.name dash --algo.beta 0",
    "nogf": "--algo.name dash --algo.beta {beta} --algo.filter_threshold -1",
    "grpo": "--algo.name grpo",
    "ppo_multi": "--algo.name ppo_multi --algo.ppo_k {multi_k} --algo.beta {beta}",
    "ppo_mini": "--algo.name ppo_mini --algo.ppo_k {mini_k} --algo.beta {beta}",
    "sft_h": "--algo.name sft --sft.data human",
    "sft_m": "--algo.name sft --sft.data {traces}",
}

HOW_TO_READ = f"""How to read the verdicts: a directional claim is **reproduced** when the 95% interval of our
effect lies on the paper's side of 0, **contradicted** when it lies on the other side, and
**inconclusive** when it contains 0; a claim of no difference ("matches", "unchanged") is
reproduced when the interval lies inside +-{MARGIN}, contradicted when wholly outside it. An arm
that did not run leaves its rows inconclusive. Intervals: with 3 or more seeds a t interval
over the per-seed effects, else a paired bootstrap over evaluation problems (every model
answers the same problems) or over training steps (the arms of one seed see the same prompts
at each step), or an unpaired bootstrap where nothing pairs. Accuracy is greedy accuracy;
pass@k is the unbiased estimator from n samples per problem. Times are training seconds
(sum of `time/step_s`: sampling, scoring, backprop, optimizer, sync), without evaluation,
checkpoint saves and start-up. The PPO arms save a checkpoint at every sampling cycle, and
are read at the last cycle that ended within DASH's training time (`stats.truncate_to_time`),
with the same evaluator."""


def _teacher_line(plan: Any) -> str:
    lines = []
    for seed in plan.seeds:
        data = plan.sft_data.get(("sft_m", seed))
        stats_path = Path(data).with_suffix(".stats.json") if data else None
        if stats_path and stats_path.is_file():
            s = json.loads(stats_path.read_text())
            lines.append(f"seed {seed}: teacher {s['teacher']}; kept {s['kept']} of {s['samples']} samples, "
                         f"covering {s['covered']} of {s['problems']} problems (correct only, distinct, at most "
                         f"{plan.preset.distill_k} each)")  # fmt: skip
    source = plan.teacher or "the finished DASH arm's checkpoint of the same seed"
    head = (f"SFT-M's teacher: {source}. Offline, the only teacher stronger than the base model is one trained "
            "here; the paper's SFT-M uses a larger model's traces (pass --teacher for one).")  # fmt: skip
    return "\n".join([head, *[f"- {line}" for line in lines]])


def report_text(plan: Any, results: dict[str, ArmResult], skipped: dict, figures: list[str]) -> str:
    p = plan.preset
    fill = {
        "beta": p.dash_beta,
        "multi_k": p.ppo_multi_k,
        "mini_k": p.ppo_mini_k,
        "traces": "traces/sft_m-sSEED-TEACHER.jsonl",
    }
    arms = [(a.name, a.label, FLAGS.get(a.name, f"--algo.name {a.name}").format(**fill),
             "ran" if a.ran and (a.evals or a.name == "base") else f"not run: {a.why}")
            for a in results.values()]  # fmt: skip
    base_cfg = plan.config("base", 0)
    ks = p.pass_ks
    parts = [
        f"# dashrl study: preset `{p.name}`",
        "",
        f"Command: `{plan.command}`; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Model `{base_cfg.model.name}`, task `{base_cfg.task.name}` (difficulty {base_cfg.task.difficulty}), "
        f"M = {base_cfg.algo.prompts_per_step}, G = {base_cfg.algo.group_size}, {base_cfg.train.steps} steps "
        f"(sampling cycles), lr {base_cfg.train.lr}, {base_cfg.sampler.max_new_tokens} new tokens at T = "
        f"{base_cfg.sampler.temperature}; seeds {', '.join(str(s) for s in plan.seeds)}.",
        f"Evaluation: greedy on {', '.join(p.eval_sets)} ({p.eval_limit or 'all'} problems each, "
        f"{p.eval_max_new_tokens} tokens; the first set is in distribution); pass@k from n = {p.passk_n} "
        f"samples at T = {p.passk_temperature} on the first {p.passk_limit or 'all'} problems of {p.id_set}.",
        "",
        "## Which arm is which",
        "",
        "The paper's DASH keeps the KL term (here beta = "
        f'{p.dash_beta}); its "No-KL" removes it, which is dashrl\'s '
        "`dash` default (beta 0). No-GF and the PPO arms keep DASH's beta; GRPO uses its own (0.04).",
        "",
        arms_table(arms),
        "",
        _teacher_line(plan),
        "",
        "## Results",
        "",
        results_table(results, p.eval_sets, ks),
        "",
        "## Findings",
        "",
        HOW_TO_READ,
        "",
    ]
    for f in findings(results, p.id_set, p.eval_sets[1:], ks):
        parts += [render_finding(f), ""]
    parts += ["## Figures", "", *[f"![{name}]({name})" for name in figures], ""]
    return "\n".join(parts)


def write_report(plan: Any, results: dict[str, ArmResult], skipped: dict) -> Path:
    """Draw the figures and write `DIR/report.md` (replaced on each run: it is derived)."""
    from dashrl.study.figures import draw
    from dashrl.train.checkpoint import atomic_write_text

    plan.out.mkdir(parents=True, exist_ok=True)
    figures = draw(results, plan.out, plan.preset.id_set)
    path = plan.out / "report.md"
    atomic_write_text(path, report_text(plan, results, skipped, figures))
    return path
