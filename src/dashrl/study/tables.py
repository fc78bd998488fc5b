"""The five findings built from the arms' results, and the markdown they render to.

Pure: `findings(results, id_set, ood_sets, n)` takes `ArmResult`s (plain numbers) and
returns the `Finding`s; `render(...)` turns them into report.md text. Which arm is which:
"DASH" is the arm `dash` (with the KL term, as the paper's DASH); "No-KL" is `dash_nokl`.
"""

from __future__ import annotations

from typing import Any, Sequence

from dashrl.study.findings import (
    MARGIN,
    ArmResult,
    Claim,
    Finding,
    changes,
    curve,
    eval_claim,
    passk_claim,
    pooled_claim,
    stability_note,
    std_diff,
    step_seconds,
    steps_claim,
    time_saving,
    trained_abs_adv,
)


def _early(rows: list[dict[str, Any]]) -> list[float]:
    """Training reward over the first third of the sampling cycles (at least 3), cycle 0 included
    (`steps_claim` skips it: both arms still hold the initial weights there)."""
    c = curve(rows)
    return c[: max(3, len(c) // 3)]


def finding1(r: dict[str, ArmResult], id_set: str, ood: Sequence[str]) -> Finding:
    dash, sft_h, sft_m, base = r["dash"], r["sft_h"], r["sft_m"], r["base"]
    claims = []
    for sft in (sft_h, sft_m):
        claims.append(
            eval_claim(
                f"DASH beats {sft.label} in distribution",
                f"DASH - {sft.label}, accuracy on {id_set}",
                +1,
                dash,
                sft,
                [id_set],
            )
        )
        claims.append(
            eval_claim(
                f"DASH beats {sft.label} out of distribution",
                f"DASH - {sft.label}, accuracy on {', '.join(ood)} (pooled)",
                +1,
                dash,
                sft,
                ood,
            )
        )
    claims.append(
        eval_claim("SFT-H even degrades the model", f"SFT-H - base, accuracy on {id_set}", -1, sft_h, base, [id_set])
    )
    claims.append(
        eval_claim(
            "SFT-H even degrades the model (OOD)",
            "SFT-H - base, accuracy on the OOD sets (pooled)",
            -1,
            sft_h,
            base,
            ood,
        )
    )
    return Finding(1, "On-policy RL beats SFT",
                   "On-policy RL (DASH) beats SFT on human-written solutions (SFT-H) and SFT on a "
                   "stronger model's traces (SFT-M), in and out of distribution; SFT-H even degrades the model.",
                   claims)  # fmt: skip


def finding2(r: dict[str, ArmResult], id_set: str) -> Finding:
    dash = r["dash"]
    claims, notes = [], [stability_note(dash)]
    for ppo in (r["ppo_multi"], r["ppo_mini"]):
        claims += [
            steps_claim(f"{ppo.label} improves faster early",
                        f"{ppo.label} - DASH, training reward over the first third of the cycles (paired by cycle)", +1,
                        ppo, dash, _early),
            eval_claim(f"{ppo.label} ends slightly higher at equal wall-clock",
                       f"{ppo.label} at DASH's training time - DASH, accuracy on {id_set}", +1, ppo, dash, [id_set],
                       cut_a=True),
            eval_claim(f"(reported beside: {ppo.label} at equal steps)",
                       f"{ppo.label} - DASH after the same sampling cycles, accuracy on {id_set}", None, ppo, dash,
                       [id_set]),
            pooled_claim(f"{ppo.label}'s training curve is clearly less stable",
                         f"{ppo.label} - DASH, std of step-to-step training-reward changes", +1, ppo, dash,
                         lambda rows: changes(curve(rows)), std_diff, "changes"),
        ]  # fmt: skip
        notes.append(stability_note(ppo))
        if ppo.cut_steps:
            total = [str(len(rows)) for rows in ppo.rows]
            cuts = ", ".join(f"{s} of {t}" for s, t in zip(ppo.cut_steps, total))
            notes.append(
                f"{ppo.label} read at DASH's training time: optimizer step {cuts} (per seed; none = its first cycle "
                "took longer)"
            )
    return Finding(2, "PPO-Multi and PPO-Mini against DASH",
                   "PPO-Multi (K optimizer passes over all M samples) and PPO-Mini (K mini-batches of M/K, one step "
                   "each) improve faster early and end slightly higher at equal wall-clock, but their training curves "
                   "are clearly less stable than DASH's.", claims, notes)  # fmt: skip


def finding3(r: dict[str, ArmResult], id_set: str, ks: Sequence[int]) -> Finding:
    nokl, kl = r["dash_nokl"], r["dash"]
    lo, hi = str(ks[0]), str(ks[-1])
    claims = [
        steps_claim("No-KL: higher training reward", "No-KL - DASH, training reward (paired by step)", +1, nokl, kl,
                    curve),
        eval_claim("No-KL: higher accuracy", f"No-KL - DASH, accuracy on {id_set}", +1, nokl, kl, [id_set]),
        eval_claim("No-KL: shorter generations", f"No-KL - DASH, greedy completion tokens on {id_set}", -1, nokl, kl,
                   [id_set], what="lengths"),
        steps_claim("No-KL: shorter generations (training)", "No-KL - DASH, mean sampled tokens per step", -1, nokl, kl,
                    lambda rows: curve(rows, "gen/mean_tokens")),
        passk_claim("No-KL is best at small k", f"No-KL - DASH, pass@{lo} on {id_set}", +1, nokl, kl, lo),
        passk_claim("the gap closes as k grows", f"(No-KL - DASH)@{lo} - (No-KL - DASH)@{hi}", +1, nokl, kl, lo, hi),
    ]  # fmt: skip
    return Finding(3, "Without the KL term",
                   "Without the KL term: higher training reward, higher accuracy, shorter generations; "
                   "on pass@k no-KL is best at small k and the gap closes as k grows.", claims)  # fmt: skip


def finding4(r: dict[str, ArmResult], id_set: str) -> Finding:
    dash, grpo, nogf = r["dash"], r["grpo"], r["nogf"]
    claims = [
        pooled_claim("DASH takes 83% less time than GRPO", "1 - DASH / GRPO training seconds per step", +1, dash, grpo,
                     step_seconds, time_saving, "steps", paper="0.83"),
        eval_claim("... at GRPO's accuracy", f"DASH - GRPO, accuracy on {id_set} (within +-{MARGIN})", 0, dash, grpo,
                   [id_set]),
        pooled_claim("gradient filtering saves 4% (up to 10%) of the time",
                     "1 - DASH / No-GF training seconds per step", +1, dash, nogf, step_seconds, time_saving, "steps",
                     paper="0.04 (up to 0.10)"),
        eval_claim("... at equal accuracy", f"DASH - No-GF, accuracy on {id_set} (within +-{MARGIN})", 0, dash, nogf,
                   [id_set]),
    ]  # fmt: skip
    return Finding(4, "DASH's time against GRPO and No-GF",
                   "DASH matches GRPO's accuracy at 83% less time; against No-GF, "
                   "gradient filtering saves 4% (up to 10%) of the time at equal accuracy.", claims)  # fmt: skip


def finding5(r: dict[str, ArmResult]) -> Finding:
    dash, nogf = r["dash"], r["nogf"]
    claims = [
        steps_claim("filtering raises the mean |A| of the samples trained on",
                    "DASH - No-GF, mean |A| of trained samples (paired by step)", +1, dash, nogf, trained_abs_adv,
                    skip_first=False),
        steps_claim("filtering cuts forward/backward time", "DASH - No-GF, backprop seconds per step (paired by step)",
                    -1, dash, nogf, lambda rows: curve(rows, "time/backprop_s"), skip_first=False),
        steps_claim("filtering leaves the training curve unchanged",
                    f"DASH - No-GF, training reward (paired by step, within +-{MARGIN})", 0, dash, nogf, curve),
        pooled_claim("(reported beside: curve stability)", "DASH - No-GF, std of step-to-step training-reward changes",
                     None, dash, nogf, lambda rows: changes(curve(rows)), std_diff, "changes"),
    ]  # fmt: skip
    return Finding(5, "What gradient filtering does",
                   "Gradient filtering raises the mean |advantage| of the samples trained on and "
                   "cuts forward/backward time, and leaves the training curve unchanged.", claims,
                   [stability_note(dash), stability_note(nogf)])  # fmt: skip


def findings(results: dict[str, ArmResult], id_set: str, ood: Sequence[str], ks: Sequence[int]) -> list[Finding]:
    """All five findings from the arms' results (every arm of `dashrl.study.arms.ARMS` keyed by name).

    >>> fs = findings({name: ArmResult(name, name, ran=False, why="skipped") for name in
    ...                ("base", "dash", "dash_nokl", "nogf", "grpo", "ppo_multi", "ppo_mini", "sft_h", "sft_m")},
    ...               "wp", ["wp_long"], [1, 2])
    >>> [f.number for f in fs], sorted({c.verdict for f in fs for c in f.claims})
    ([1, 2, 3, 4, 5], ['inconclusive', 'n/a (no claim)'])
    """
    return [
        finding1(results, id_set, ood),
        finding2(results, id_set),
        finding3(results, id_set, ks),
        finding4(results, id_set),
        finding5(results),
    ]


# -- markdown --------------------------------------------------------------------------------
def _fmt_effect(c: Claim) -> tuple[str, str]:
    if c.effect is None:
        return f"not measured: {c.why}", "-"
    e = c.effect
    return f"{e.value:+.3f} [{e.low:+.3f}, {e.high:+.3f}]", e.method


def render_finding(f: Finding) -> str:
    """One finding as a markdown section: the paper's finding, then one row per claim.

    >>> print(render_finding(Finding(9, "T", "P.", [Claim("c", "a - b", +1, None, "x not run")])).splitlines()[-1])
    | c | a - b | - | not measured: x not run | - | **inconclusive** |
    """
    lines = [f"### Finding {f.number}: {f.title}", "", f"Paper: {f.paper}", "",
             "| paper's claim | measured as | paper | ours (95% CI) | interval | verdict |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for c in f.claims:
        ours, method = _fmt_effect(c)
        cells = [c.claim, c.measure, c.paper or "-", ours, method, f"**{c.verdict}**"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if f.notes:
        lines += ["", *[f"- {n}" for n in f.notes]]
    return "\n".join(lines)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def results_table(results: dict[str, ArmResult], sets: Sequence[str], ks: Sequence[int]) -> str:
    """The paper's main-table layout: one row per arm (seed means), greedy accuracy per set,
    mean greedy length on the first set, pass@k, training minutes."""
    head = ["arm", *[f"acc {s}" for s in sets], f"tokens ({sets[0]})", *[f"pass@{k}" for k in ks], "train min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arm in results.values():
        variants = [(arm.label, arm.evals, arm.rows)]
        if arm.cut_evals:
            variants.append((f"{arm.label} at DASH's time", arm.cut_evals, []))
        for label, evals, rows in variants:
            if not evals:
                lines.append(
                    f"| {label} | " + " | ".join(["-"] * (len(head) - 2)) + f" | not run: {arm.why or 'no results'} |"
                )
                continue
            acc = [f"{_mean([e['sets'][s]['accuracy'] for e in evals]):.3f}" for s in sets]
            tok = f"{_mean([e['sets'][sets[0]]['mean_length'] for e in evals]):.1f}"
            pk = [f"{_mean([e['pass_at_k'][str(k)] for e in evals]):.3f}" for k in ks]
            minutes = f"{_mean([sum(step_seconds(r)) / 60 for r in rows]):.1f}" if rows else "-"
            lines.append("| " + " | ".join([label, *acc, tok, *pk, minutes]) + " |")
    return "\n".join(lines)


def arms_table(rows: list[tuple[str, str, str, str]]) -> str:
    """Which arm is which: (arm, the paper's name, dashrl flags, status)."""
    lines = ["| arm | the paper's | dashrl | status |", "|---|---|---|---|"]
    return "\n".join(lines + [f"| `{a}` | {p} | `{d}` | {s} |" for a, p, d, s in rows])
