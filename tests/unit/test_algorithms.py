"""The registry of algorithms and the variants it adds (dapo, dr_grpo, gspo, rloo, cispo): names and
config, then each loss and advantage against hand-computed values or a plain loop, then the
dynamic-sampling schedule on a fake source."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dashrl.algo import CISPOLoss, LossInputs, LossOutput, Norm, PPOClipLoss, make_loss
from dashrl.algo.advantages import Advantages, advantages_of, dr_grpo_advantages
from dashrl.algo.dapo import informative_groups, overlong_penalty, prompt_index, refill_prompts
from dashrl.algo.gspo import GSPOLoss
from dashrl.algo.registry import ALGORITHMS, ESTIMATORS, LOSSES, NAMES, resolve
from dashrl.algo.rloo import rloo_advantages
from dashrl.config import ConfigError, load_config, to_toml
from dashrl.totals import Totals

# -- the registry and the config ----------------------------------------------------------------


def test_every_registered_part_imports():
    from dashrl.train.schedules import SCHEDULE_FNS

    assert all(callable(resolve(loss.target)) for loss in LOSSES.values())
    assert all(callable(resolve(target)) for target in ESTIMATORS.values())
    for a in ALGORITHMS.values():
        assert a.loss in LOSSES and a.advantage in ESTIMATORS and a.schedule in SCHEDULE_FNS, a


def test_the_algo_modules_import_one_another_without_a_cycle():
    """losses, gspo, sft and cispo each build on algo/core.py; none imports another (lazy imports
    count), and the registry, at the bottom, imports none of them."""
    import ast

    import dashrl.algo
    from test_import_graph import cycles

    graph = {}
    for path in Path(dashrl.algo.__file__).parent.glob("*.py"):
        nodes = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module]
        graph[path.stem] = {n.module.split(".")[2]: "" for n in nodes if n.module.startswith("dashrl.algo.")}
    assert cycles(graph) == [] and "losses" not in graph["gspo"] | graph["sft"] | graph["cispo"], graph
    assert set(graph["registry"]) == set() and set(graph["core"]) == {"registry"}


def test_the_registry_and_the_config_load_without_torch():
    code = (
        "import sys, dashrl.algo.registry, dashrl.config; "
        "dashrl.config.load_config(overrides=['--algo.name', 'dapo']); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", NAMES)
def test_every_name_loads_and_round_trips(name):
    cfg = load_config(overrides=["--algo.name", name])
    assert cfg.algo.name == cfg.algo.schedule == name
    assert "\nschedule =" not in to_toml(cfg)  # the alias is not written
    import tomllib

    again = load_config(overrides=[f"--{sec}.{k}={v}" for sec, vals in tomllib.loads(to_toml(cfg)).items()
                                   for k, v in vals.items()
                                   if sec == "algo"])  # fmt: skip
    assert again.algo == cfg.algo


def test_unknown_name_lists_every_name_in_one_line():
    with pytest.raises(ConfigError) as err:
        load_config(overrides=["--algo.name", "ppo"])
    msg = str(err.value)
    assert "\n" not in msg and all(n in msg for n in NAMES), msg


def test_schedule_is_an_alias_with_a_note(capsys):
    assert load_config(overrides=["--algo.schedule", "rloo"]).algo.name == "rloo"
    assert capsys.readouterr().err.strip() == "[dashrl] note: algo.schedule is now algo.name (--algo.name rloo)"
    assert load_config(overrides=["--algo.name", "rloo"]).algo.name == "rloo"
    assert capsys.readouterr().err == ""
    with pytest.raises(ConfigError, match="give one of them"):
        load_config(overrides=["--algo.name", "gspo", "--algo.schedule", "rloo"])


def test_algorithm_defaults_and_flags_that_override_them():
    dapo = load_config(overrides=["--algo.name", "dapo", "--sampler.max_new_tokens", "64"]).algo
    assert (dapo.epsilon_high, dapo.clip_eps, dapo.aggregation, dapo.overlong_window, dapo.dynamic_sampling) == (
        0.28,
        0.2,
        "token-mean",
        16,
        True,
    )
    dr = load_config(overrides=["--algo.name", "dr_grpo"]).algo
    assert (dr.scale_advantages, dr.aggregation, dr.loss) == (False, "constant", "ppo_clip")
    gspo = load_config(overrides=["--algo.name", "gspo", "--algo.epsilon_high", "0.001"]).algo
    assert (gspo.loss, gspo.clip_eps, gspo.epsilon_high) == ("gspo", 3e-4, 0.001)
    dash = load_config().algo
    assert (dash.loss, dash.clip_eps, dash.epsilon_high, dash.overlong_window, dash.dynamic_sampling) == (
        "pg",
        0.2,
        0.2,
        0,
        False,
    )
    assert load_config(overrides=["--algo.dynamic_sampling", "true"]).algo.dynamic_sampling
    with pytest.raises(ConfigError, match="algo.dynamic_sampling: needs an algorithm that samples once per step"):
        load_config(overrides=["--algo.name", "grpo", "--algo.dynamic_sampling", "true"])


def test_advantages_of_follows_the_algorithm():
    assert advantages_of(load_config(overrides=["--algo.name", "rloo"])) == Advantages("rloo", 0, 1.0, 48)
    assert advantages_of(load_config(overrides=["--algo.name", "dr_grpo"])).estimator == "dr_grpo"
    assert (
        advantages_of(load_config(overrides=["--algo.scale_advantages", "false"])).estimator == "dr_grpo"
    )  # the former flag
    assert (
        advantages_of(load_config(overrides=["--algo.name", "dapo"])).overlong_window == 12
    )  # a quarter of the default 48-token cap


# -- advantages ------------------------------------------------------------------------------


def test_rloo_matches_a_loop_oracle():
    rewards = torch.tensor([[1.0, 0.0, 0.5, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, 3.0, 1.0, 1.0]])
    got = rloo_advantages(rewards)
    for b in range(3):
        for i in range(4):
            others = [rewards[b, j].item() for j in range(4) if j != i]
            assert got[b, i].item() == pytest.approx(rewards[b, i].item() - sum(others) / 3)
    assert got[1].tolist() == [0.0] * 4


def test_dr_grpo_is_centred_not_scaled():
    assert dr_grpo_advantages(torch.tensor([[3.0, 1.0]])).tolist() == [[1.0, -1.0]]


def test_overlong_penalty_hand_computed():
    # cap 100, window 20: no penalty up to 80, then -(len - 80) / 20, -1 at the cap
    got = overlong_penalty(torch.tensor([[50, 80, 85, 100]]), max_tokens=100, window=20, penalty=0.5)
    assert got.tolist() == [[0.0, 0.0, -0.125, -0.5]]
    assert overlong_penalty(torch.tensor([[100]]), 100, 0).tolist() == [[0.0]]


def test_overlong_shaping_makes_equal_rewards_informative():
    adv = Advantages("grpo", overlong_window=4, max_tokens=8)(
        torch.tensor([[1.0, 1.0], [0.0, 0.0]]), torch.tensor([[2, 8], [2, 3]])
    )
    assert informative_groups(adv).tolist() == [True, False]


# -- losses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "adv, ratio, loss",
    [
        (1.0, 1.5, -1.28),  # A > 0: capped at 1 + eps_high
        (1.0, 1.25, -1.25),  # A > 0, inside the higher range: not clipped (symmetric 0.2 would cap it)
        (-1.0, 0.5, 0.8),  # A < 0: capped at 1 - eps_low
    ],
)
def test_clip_higher_cases(adv, ratio, loss):
    x = LossInputs(torch.tensor([[math.log(ratio)]]), torch.zeros(1, 1), torch.tensor([adv]), torch.ones(1, 1))
    assert PPOClipLoss(clip_eps=0.2, epsilon_high=0.28)(x)[0].item() == pytest.approx(loss, rel=1e-5)


def gspo_oracle(lp, old, adv, mask, lo, hi):
    """GSPO by a plain loop: per sequence, the length-normalised log-ratio, one clip, mean over sequences."""
    total = 0.0
    for i in range(lp.shape[0]):
        toks = [t for t in range(lp.shape[1]) if mask[i, t] > 0]
        if not toks:
            continue
        s = math.exp(sum(lp[i, t].item() - old[i, t].item() for t in toks) / len(toks))
        a = adv[i].item()
        total += -min(s * a, min(max(s, 1 - lo), 1 + hi) * a)
    return total / lp.shape[0]


def test_gspo_matches_a_loop_oracle_and_clips_whole_sequences():
    g = torch.Generator().manual_seed(0)
    lp = -torch.rand(5, 6, generator=g)
    old = lp + 0.3 * torch.randn(5, 6, generator=g)
    mask = (torch.rand(5, 6, generator=g) > 0.3).float()
    mask[4] = 0.0  # an empty completion
    adv = torch.tensor([1.0, -1.0, 0.5, -2.0, 1.0])
    for lo, hi in [(0.2, 0.28), (3e-4, 4e-4)]:
        lp_ = lp.clone().requires_grad_(True)
        out = GSPOLoss(lo, hi)(LossInputs(lp_, old, adv, mask))
        assert out.loss.item() == pytest.approx(gspo_oracle(lp, old, adv, mask, lo, hi), rel=1e-5)
        out.loss.backward()
        assert (lp_.grad[mask == 0] == 0).all()
    # a sequence whose ratio is clipped has no gradient on any of its tokens
    x = LossInputs(
        torch.tensor([[0.5, 0.5]], requires_grad=True), torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2)
    )
    GSPOLoss(0.2, 0.2)(x).loss.backward()
    assert x.logprobs.grad.abs().sum() == 0


def test_cispo_hand_computed_loss_and_gradient():
    """Weights sg(clip(r, 0.8, 1.28)): e^0.5 -> 1.28, e^-0.5 -> 0.8, e^0.1 kept; row 2: 1 and e^-1 -> 0.8."""
    lp = torch.tensor([[0.5, -0.5, 0.1], [0.0, -1.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    x = LossInputs(lp, torch.zeros(2, 3), torch.tensor([1.0, -2.0]), mask)
    out = CISPOLoss(clip_eps=0.2, epsilon_high=0.28)(x)
    w = torch.tensor([[1.28, 0.8, math.exp(0.1)], [1.0, 0.8, 0.0]])
    per_token = [-1.28 * 0.5, -0.8 * -0.5, -math.exp(0.1) * 0.1, 0.0, -0.8 * -2.0 * -1.0]  # -w A log p
    assert out.loss.item() == pytest.approx(sum(per_token) / 5, rel=1e-6)
    assert out.metrics["clip_frac"].item() == pytest.approx(3 / 5)
    out.loss.backward()
    assert torch.allclose(lp.grad, -w * torch.tensor([[1.0], [-2.0]]) / 5)  # -clip(r) A / N per token
    # PPO-clip gives the capped token (r = e^0.5 > 1.28, A > 0) no gradient; CISPO keeps it, weighted 1.28
    lp2 = lp.detach().clone().requires_grad_(True)
    PPOClipLoss(clip_eps=0.2, epsilon_high=0.28)(LossInputs(lp2, x.old_logprobs, x.advantages, mask)).loss.backward()
    assert lp2.grad[0, 0] == 0 and lp.grad[0, 0].item() == pytest.approx(-1.28 / 5)


def test_cispo_by_name_takes_the_defaults_its_docstring_sources():
    algo = load_config(overrides=["--algo.name", "cispo"]).algo
    assert (algo.loss, algo.clip_eps, algo.epsilon_high, algo.aggregation) == ("cispo", 1.0, 4.0, "token-mean")
    assert make_loss(algo.loss, **algo.hparams) == CISPOLoss(1.0, 4.0, "token-mean")  # weight in [0, 5]: TRL's cap
    assert LOSSES["cispo"].ratio  # off-policy samples (dist.overlap) are corrected


LOSSES_TO_SPLIT = [make_loss("pg"), make_loss("ppo_clip", epsilon_high=0.28),
                   make_loss("gspo", clip_eps=0.2, epsilon_high=0.28),
                   make_loss("ppo_clip", aggregation="constant"), make_loss("sft"),
                   make_loss("cispo", clip_eps=0.2, epsilon_high=0.28)]  # fmt: skip


@pytest.mark.parametrize("loss_fn", LOSSES_TO_SPLIT, ids=lambda f: repr(f))
def test_micro_batch_parts_add_up_for_every_loss(loss_fn):
    """The loss and gradient of a batch equal the sum over its micro-batches under the batch's
    `Norm`, and the metrics the loss declares summed add up the same way."""
    g = torch.Generator().manual_seed(2)
    lp = -torch.rand(6, 5, generator=g)
    old = lp + 0.2 * torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    adv = torch.randn(6, generator=g)
    norm = Norm(6, float(mask.sum()), 5)
    full_lp = lp.clone().requires_grad_(True)
    full = LossOutput.of(loss_fn(LossInputs(full_lp, old, adv, mask, norm)))
    full.loss.backward()
    part_lp = lp.clone().requires_grad_(True)
    totals = Totals()
    for idx in ([0, 1], [2, 3, 4], [5]):
        out = LossOutput.of(loss_fn(LossInputs(part_lp[idx], old[idx], adv[idx], mask[idx], norm)))
        out.loss.backward()
        totals.add({k: float(v) for k, v in out.metrics.items()}, len(idx), summed=out.summed)
    assert torch.allclose(full_lp.grad, part_lp.grad, atol=1e-7)
    for k in full.summed:
        assert totals.result()[k] == pytest.approx(float(full.metrics[k]), rel=1e-5)


# -- dynamic sampling ---------------------------------------------------------------------------


def test_refill_and_prompt_stream():
    assert refill_prompts(need=4, informative=2, sampled=8) == 16  # share 1/4
    assert refill_prompts(need=1, informative=8, sampled=8) == 1
    assert [prompt_index(2, j, 4) for j in range(4)] == [8, 9, 10, 11]  # the step's own batch
    extras = {prompt_index(s, j, 4) for s in range(50) for j in range(4, 40)}
    assert len(extras) == 50 * 36 and min(extras) > 10**9  # disjoint from every step's batch and each other


class FakeSource:
    """Problem i's group is informative when i is not a multiple of 3 (its G rewards differ)."""

    def __init__(self, cfg):
        self.cfg, self.calls = cfg, []
        self.task = SimpleNamespace(get=lambda i: i, batch=lambda step, n: [step * n + j for j in range(n)])

    def rollout(self, examples, seed, first_group=0):
        from dashrl.rollout.samples import Rollouts, Sample

        self.calls.append((list(examples), seed, first_group))
        G = self.cfg.algo.group_size
        samples = [Sample([1], [2, 3], [0.0, 0.0], float(i), (0.0 if ex % 3 == 0 else (1.0 if i % 2 else -1.0)),
                          first_group + b, "stop")
                   for b, ex in enumerate(examples) for i in range(G)]  # fmt: skip
        return Rollouts(
            samples, {"time/sampling_s": 1.0, "time/scoring_s": 0.0, "gen/sampled_tokens": 2 * len(samples)}
        )

    def ahead(self, step):
        pass


class FakeLearner:
    def __init__(self, cfg):
        self.cfg, self.trained = cfg, []

    def backprop(self, samples, norm):
        self.trained.append((sorted({s.group for s in samples}), norm))
        return {"loss": 0.0, "train/samples": len(samples), "train/tokens": 2 * len(samples), "nonfinite": 0.0}

    def optimizer_step(self, nonfinite):
        return {"grad_norm": 0.0, "lr": 0.0}

    def sync(self):
        return 0.0

    def lr(self):
        return 0.0


@pytest.mark.parametrize("oversample, max_rounds", [(1.0, 4), (1.5, 4), (1.0, 1)])
def test_dynamic_step_trains_exactly_m_informative_groups(oversample, max_rounds):
    from dashrl.train.schedules import dynamic_step

    cfg = load_config(overrides=["--algo.name", "dapo", "--algo.prompts_per_step", "6", "--algo.group_size", "2",
                                 "--train.micro_batch_size", "2", "--algo.oversample", str(oversample),
                                 "--algo.max_rounds", str(max_rounds)])  # fmt: skip
    src, lrn = FakeSource(cfg), FakeLearner(cfg)
    row = dynamic_step(src, lrn, step=5)[0]
    drawn = [ex for examples, _, _ in src.calls for ex in examples]
    informative = [g for g, ex in enumerate(drawn) if ex % 3]
    want = informative[:6]
    assert lrn.trained[0][0] == want  # the first M informative groups, in sampling order
    assert lrn.trained[0][1].num_seqs == len(want) * 2  # normalised over the chosen groups only
    assert (
        row["train/groups"] == len(want)
        and row["dynamic/prompts_sampled"] == len(drawn)
        and row["dynamic/rounds"] == len(src.calls)
    )
    assert row["dynamic/cap_hit"] == int(len(want) < 6)
    assert drawn[:6] == list(range(30, 36))  # round 0 begins with the step's own batch
    assert [seed for _, seed, _ in src.calls] == [(0 * 1_000_003 + 5) * 1_009 + r for r in range(len(src.calls))]
    assert len(drawn) == len(set(drawn))  # no prompt twice
    if max_rounds == 1:
        assert row["dynamic/cap_hit"] == 1 and row["train/groups"] == 4
    else:
        assert row["train/groups"] == 6
    again = FakeSource(cfg)
    dynamic_step(again, FakeLearner(cfg), step=5)
    assert again.calls == src.calls  # a pure function of (seed, step, round)
