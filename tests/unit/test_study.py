"""`dashrl study`'s pure parts: the wall-clock cut, the per-step series, effects, verdicts and
tables, from hand-made numbers whose answers are computed here by hand."""

from __future__ import annotations

import argparse

import pytest

from dashrl.cli import main
from dashrl.study import findings as F
from dashrl.study.arms import ARMS, arm_config, check_overrides
from dashrl.study.presets import PRESETS, get_preset
from dashrl.study.tables import findings, render_finding, results_table

ARM_NAMES = ("base", "dash", "dash_nokl", "nogf", "grpo", "ppo_multi", "ppo_mini", "sft_h", "sft_m")


# -- the wall-clock cut -------------------------------------------------------------------
def test_cut_step_reads_ppo_at_dash_time_at_a_cycle_end():
    # PPO-Multi with K = 3: each cycle = sampling (first row, 6 s) + 2 more updates of 2 s
    rows = [{"step": s, "time/step_s": t} for s, t in enumerate([6, 2, 2] * 4, start=1)]  # cycle ends 10, 20, 30, 40 s
    assert F.cut_step(rows, budget=29.9, k=3) == 6  # cycle 2 ended at 20 s; cycle 3, at 30 s, is past the budget
    assert F.cut_step(rows, budget=30.0, k=3) == 9  # ending exactly at the budget counts
    assert F.cut_step(rows, budget=1000, k=3) == 12  # the whole run fits: its final step
    assert F.cut_step(rows, budget=9.0, k=3) is None  # even the first cycle took longer
    # a step inside a cycle is never chosen, though step 4 (16 s) is within 17 s
    assert F.cut_step(rows, budget=17.0, k=3) == 3
    # rows in any order are read in step order
    assert F.cut_step(list(reversed(rows)), budget=29.9, k=3) == 6


def test_cut_budget_is_dash_training_seconds_per_cycle():
    dash = [{"step": 1, "reward/mean": 0.1, "time/step_s": 4.0}, {"step": 2, "reward/mean": 0.2, "time/step_s": 5.0}]
    ppo = [
        {"step": 1, "reward/mean": 0.1, "time/step_s": 3.0}, {"step": 2, "time/step_s": 1.0},  # cycle 1: 4 s
        {"step": 3, "reward/mean": 0.3, "time/step_s": 3.5}, {"step": 4, "time/step_s": 1.5},  # cycle 2: 5 s
    ]  # fmt: skip
    assert F.step_seconds(dash) == [4.0, 5.0]
    assert F.step_seconds(ppo) == [4.0, 5.0]  # rows grouped into cycles by the sampling metrics of their first row
    assert F.curve(ppo) == [0.1, 0.3]  # one training reward per cycle
    assert F.cut_step(ppo, sum(F.step_seconds(dash)) - 0.5, k=2) == 2


def test_trained_abs_adv_divides_by_the_kept_fraction():
    rows = [
        {"step": 1, "adv/abs_mean": 0.2, "filter/kept_frac": 0.25},
        {"step": 2, "adv/abs_mean": 0.0, "filter/kept_frac": 0.0},
    ]
    assert F.trained_abs_adv(rows) == [0.8, 0.0]


# -- effects and verdicts -----------------------------------------------------------------
def _eval(ids, ood=None, lengths=None, passk=None):
    ood = ood if ood is not None else ids
    lengths = lengths if lengths is not None else [10.0] * len(ids)
    passk = passk or {"1": [float(x) for x in ids], "2": [float(x) for x in ids]}
    return {
        "sets": {"wp": {"correct": ids, "lengths": lengths, "accuracy": sum(ids) / len(ids),
                        "mean_length": sum(lengths) / len(lengths)},
                 "wp_ood": {"correct": ood, "lengths": lengths, "accuracy": sum(ood) / len(ood), "mean_length": 10.0}},
        "pass_at_k": {k: sum(v) / len(v) for k, v in passk.items()}, "pass_items": passk,
    }  # fmt: skip


def _rows(rewards, step_s=1.0, adv=0.2, kept=1.0, backprop=1.0, tokens=20.0):
    return [
        {"step": i + 1, "reward/mean": r, "time/step_s": step_s, "adv/abs_mean": adv, "filter/kept_frac": kept,
         "time/backprop_s": backprop, "gen/mean_tokens": tokens}
        for i, r in enumerate(rewards)
    ]  # fmt: skip


def _results(**arms):
    out = {n: F.ArmResult(n, n, ran=False, why="not in this test") for n in ARM_NAMES}
    for name, (evals, rows) in arms.items():
        out[name] = F.ArmResult(name, name, evals=evals, rows=rows)
    return out


def _claim(fs, number, start):
    return next(c for c in next(f for f in fs if f.number == number).claims if c.claim.startswith(start))


def test_finding1_verdicts_from_given_numbers():
    n = 40
    dash = [1] * 30 + [0] * 10  # 0.75
    sft_h = [0] * n  # 0.0: below the base model
    sft_m = [1] * n  # 1.0: better than DASH everywhere DASH fails
    base = [1] * 20 + [0] * 20  # 0.5
    r = _results(dash=([_eval(dash)], [_rows([0.1] * 3)]), sft_h=([_eval(sft_h)], [_rows([0.1] * 3)]),
                 sft_m=([_eval(sft_m)], [_rows([0.1] * 3)]), base=([_eval(base)], []))  # fmt: skip
    fs = findings(r, "wp", ["wp_ood"], [1, 2])
    beats_h = _claim(fs, 1, "DASH beats sft_h in distribution")
    assert beats_h.effect.value == pytest.approx(0.75) and beats_h.effect.low > 0 and beats_h.verdict == "reproduced"
    beats_m = _claim(fs, 1, "DASH beats sft_m in distribution")
    assert beats_m.effect.value == pytest.approx(-0.25) and beats_m.verdict == "contradicted"
    degrades = _claim(fs, 1, "SFT-H even degrades the model")
    assert degrades.effect.value == pytest.approx(-0.5) and degrades.verdict == "reproduced"
    assert "paired bootstrap, 40 problems" == degrades.effect.method


def test_equal_arms_are_inconclusive_for_a_direction_and_reproduced_for_no_difference():
    same = [1, 0] * 20
    rows = _rows([0.2, 0.4, 0.5, 0.6])
    r = _results(dash=([_eval(same)], [rows]), grpo=([_eval(same)], [_rows([0.2, 0.4, 0.5, 0.6], step_s=6.0)]),
                 nogf=([_eval(same)], [_rows([0.2, 0.4, 0.5, 0.6], step_s=1.25, adv=0.3, backprop=3.0)]),
                 dash_nokl=([_eval(same)], [rows]))  # fmt: skip
    fs = findings(r, "wp", ["wp_ood"], [1, 2])
    assert _claim(fs, 3, "No-KL: higher accuracy").verdict == "inconclusive"  # effect exactly 0
    matches = _claim(fs, 4, "... at GRPO's accuracy")
    assert matches.effect.value == 0 and matches.verdict == "reproduced"
    saving = _claim(fs, 4, "DASH takes 83% less time")
    assert (
        saving.effect.value == pytest.approx(1 - 1.0 / 6.0)
        and saving.verdict == "reproduced"
        and saving.paper == "0.83"
    )
    gf = _claim(fs, 4, "gradient filtering saves")
    assert gf.effect.value == pytest.approx(0.2)  # 1 - 1 / 1.25
    adv = _claim(fs, 5, "filtering raises the mean |A|")  # DASH 0.2 / 1.0 kept vs No-GF 0.3: filtering lowered it here
    assert adv.effect.value == pytest.approx(-0.1) and adv.verdict == "contradicted"
    bp = _claim(fs, 5, "filtering cuts forward/backward time")
    assert bp.effect.value == pytest.approx(-2.0) and bp.verdict == "reproduced"
    assert _claim(fs, 5, "filtering leaves the training curve unchanged").verdict == "reproduced"


def test_ppo_at_dash_time_uses_the_cut_evaluation_and_stability_is_a_number():
    dash_rows = _rows([0.1, 0.2, 0.3, 0.4, 0.5])  # steady: every change +0.1
    ppo_rows = _rows([0.1, 0.5, 0.2, 0.7, 0.3])  # jumpy
    ppo = F.ArmResult(
        "ppo_multi", "PPO-Multi", evals=[_eval([0] * 10)], rows=[ppo_rows], cut_evals=[_eval([1] * 10)], cut_steps=[6]
    )
    r = _results(dash=([_eval([0] * 10)], [dash_rows]))
    r["ppo_multi"] = ppo
    fs = findings(r, "wp", ["wp_ood"], [1, 2])
    at_time = _claim(fs, 2, "PPO-Multi ends slightly higher at equal wall-clock")
    assert at_time.effect.value == pytest.approx(1.0) and at_time.verdict == "reproduced"
    assert _claim(fs, 2, "(reported beside: PPO-Multi at equal steps)").verdict == "n/a (no claim)"
    unstable = _claim(fs, 2, "PPO-Multi's training curve")
    changes = [0.4, -0.3, 0.5, -0.4]
    m = sum(changes) / 4
    std = (sum((c - m) ** 2 for c in changes) / 3) ** 0.5
    assert unstable.effect.value == pytest.approx(std - 0.0, abs=1e-9)
    notes = next(f for f in fs if f.number == 2).notes
    assert any("largest drop 0.400" in n for n in notes) and any("step 6 of 5" in n for n in notes)
    assert _claim(fs, 2, "ppo_mini ends slightly higher").verdict == "inconclusive"  # not run


def test_three_seeds_use_a_t_interval_over_seeds():
    e = F.paired_effect([[1, 1], [1, 0], [0, 0]], [[0, 0], [0, 0], [0, 0]])
    assert e.method == "t over 3 seeds" and e.value == pytest.approx(0.5)
    assert e.low == pytest.approx(0.5 - 4.303 * 0.5 / 3**0.5) and e.high == pytest.approx(0.5 + 4.303 * 0.5 / 3**0.5)


def test_passk_gap_closing_is_measured_per_problem():
    nokl = _eval([1, 1, 0, 0], passk={"1": [1.0, 0.5, 0.5, 0.0], "4": [1.0, 1.0, 1.0, 0.0]})
    kl = _eval([1, 0, 0, 0], passk={"1": [0.5, 0.25, 0.0, 0.0], "4": [1.0, 1.0, 1.0, 0.0]})
    r = _results(dash=([kl], [_rows([0.1] * 3)]), dash_nokl=([nokl], [_rows([0.1] * 3)]))
    fs = findings(r, "wp", ["wp_ood"], [1, 4])
    assert _claim(fs, 3, "No-KL is best at small k").effect.value == pytest.approx(0.3125)  # (2.0 - 0.75) / 4
    assert _claim(fs, 3, "the gap closes").effect.value == pytest.approx(0.3125)  # the gap at k = 4 is 0


def test_every_table_renders_with_a_verdict_and_escaped_pipes():
    r = _results(dash=([_eval([1, 0])], [_rows([0.1, 0.2, 0.3])]), nogf=([_eval([1, 0])], [_rows([0.1, 0.2, 0.3])]))
    text = "\n\n".join(render_finding(f) for f in findings(r, "wp", ["wp_ood"], [1, 2]))
    for n in range(1, 6):
        assert f"### Finding {n}:" in text
    body = [line for line in text.splitlines() if line.startswith("| ") and "paper's claim" not in line]
    assert body and all(line.count(" | ") == 5 for line in body)  # six cells: "|A|" does not split a row
    assert all(
        line.rstrip(" |").endswith(("reproduced**", "contradicted**", "inconclusive**", "n/a (no claim)**"))
        for line in body
    )
    table = results_table(r, ["wp", "wp_ood"], [1, 2])
    assert (
        "| dash | 0.500 | 0.500 | 10.0 | 0.500 | 0.500 | 0.1 |" in table
    )  # 3 steps of 1 s = 0.05 min and "not run: not in this test" in table


# -- presets, arms, flags ---------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("quick", [False, True])
def test_every_preset_builds_a_valid_config_for_every_arm(tmp_path, preset, quick):
    p = get_preset(preset, quick)
    for name, arm in ARMS.items():
        cfg = arm_config(arm, p, {}, tmp_path, seed=1, sft_data="human")
        assert cfg.run.name == f"{name}-s1" and cfg.train.seed == int(p.config["train"].get("seed", 0)) + 1
        assert (cfg.algo.schedule == "sft") == (arm.kind == "sft")
    traces = arm_config(ARMS["sft_m"], p, {}, tmp_path, 0, sft_data=str(tmp_path / "t.jsonl"))
    assert traces.sft.data == str(tmp_path / "t.jsonl") and traces.algo.loss == "sft"
    dash = arm_config(ARMS["dash"], p, {}, tmp_path, 0)
    assert dash.algo.beta == p.dash_beta > 0 and arm_config(ARMS["dash_nokl"], p, {}, tmp_path, 0).algo.beta == 0.0
    assert arm_config(ARMS["nogf"], p, {}, tmp_path, 0).algo.filter_threshold < 0
    multi = arm_config(ARMS["ppo_multi"], p, {}, tmp_path, 0)
    assert multi.algo.ppo_k == 3 and multi.run.save_every == 3 and multi.run.keep_last == 0
    assert p.pass_ks[0] == 1 and p.pass_ks[-1] == p.passk_n


def test_study_wide_overrides_cannot_redefine_an_arm():
    check_overrides({"model": {"name": "x"}, "run": {"save_every": "1"}})
    for bad in ({"algo": {"schedule": "grpo"}}, {"train": {"seed": "3"}}, {"run": {"name": "x"}}):
        with pytest.raises(ValueError):
            check_overrides(bad)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo.beta", "0.1"], "set by each arm"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--arms", "dash,ppo"], "unknown arm 'ppo'"),
        (["--train.stesp", "3"], "did you mean 'steps'"),
        (["--run.out_dir", "x"], "use --out DIR"),
    ],
)
def test_bad_study_flags_fail_with_one_line_before_anything(tmp_path, capsys, argv, message):
    out = tmp_path / "s"
    assert main(["study", "--quick", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_report_text_names_every_arm_and_finding(tmp_path):
    from dashrl.cli.study import Plan
    from dashrl.study.report import report_text

    args = argparse.Namespace(
        preset="cpu", quick=True, overrides=[], seeds=1, arms=None, out=str(tmp_path), teacher=None
    )
    plan = Plan(args)
    text = report_text(plan, _results(), {}, ["reward_time.png"])
    for name in ARM_NAMES:
        assert f"| `{name}` |" in text
    assert "beta = 0.04" in text and "No-KL" in text and text.count("### Finding") == 5
    assert "SFT-M's teacher: the finished DASH arm's checkpoint" in text
