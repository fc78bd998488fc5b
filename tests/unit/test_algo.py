"""Hand-computed values for advantages, filtering, losses, KL and aggregation."""

import math

import pytest
import torch

from dashrl.algo import (
    AGGREGATIONS,
    KLTerm,
    LossInputs,
    Norm,
    PGLoss,
    PPOClipLoss,
    aggregate,
    gradient_filter,
    group_advantages,
    kl_penalty,
    make_loss,
)


def test_group_advantages_hand_computed():
    # mean 0.25; centred (.75, -.25, -.25, -.25); unbiased std sqrt(0.75 / 3) = 0.5
    adv = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), eps=1e-4)
    expected = torch.tensor([[0.75, -0.25, -0.25, -0.25]]) / 0.5001
    assert torch.allclose(adv, expected, atol=1e-6)


def test_group_advantages_unscaled_is_centred():
    adv = group_advantages(torch.tensor([[3.0, 1.0], [2.0, 6.0]]), scale=False)
    assert adv.tolist() == [[1.0, -1.0], [-2.0, 2.0]]


def test_equal_rewards_give_exact_zeros():
    rewards = torch.tensor([[0.3] * 7, [1.0] * 7, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]])
    adv = group_advantages(rewards)
    assert (adv[:2] == 0).all()
    assert (adv[2] != 0).all()


def test_group_advantages_match_loop_oracle():
    g = torch.Generator().manual_seed(0)
    rewards = torch.rand(5, 6, generator=g).round()  # binary rewards, some groups all equal
    adv = group_advantages(rewards, eps=1e-4)
    for b in range(5):
        row = rewards[b].tolist()
        mean = sum(row) / len(row)
        std = math.sqrt(sum((r - mean) ** 2 for r in row) / (len(row) - 1))
        for j, r in enumerate(row):
            assert adv[b, j].item() == pytest.approx((r - mean) / (std + 1e-4), abs=1e-5)


def test_group_advantages_rejects_bad_shape():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.tensor([[1.0], [0.0]]))


def test_gradient_filter():
    adv = torch.tensor([0.0, 0.05, -0.05, 0.2, -3.0])
    assert gradient_filter(adv, 0.1).tolist() == [False, False, False, True, True]
    assert gradient_filter(adv, 0.0).tolist() == [False, True, True, True, True]
    assert gradient_filter(adv, -1.0).all()  # No-GF keeps everything


LP = torch.tensor([[-1.0, -2.0], [-0.5, -9.0]])
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
ADV = torch.tensor([2.0, -1.0])


def inputs(lp, old=None, adv=ADV, mask=MASK, norm=None):
    return LossInputs(lp, old if old is not None else torch.zeros_like(lp), adv, mask, norm)


def test_pg_loss_token_mean():
    # per token -A*lp: (2, 4) and (-0.5, masked) -> 5.5 / 3 tokens
    loss, _ = PGLoss("token-mean")(inputs(LP))
    assert loss.item() == pytest.approx(5.5 / 3)


def test_pg_loss_seq_mean_and_constant():
    loss, _ = PGLoss("seq-mean")(inputs(LP))
    assert loss.item() == pytest.approx((6.0 / 2 + -0.5 / 1) / 2)
    loss, _ = PGLoss("constant")(inputs(LP, norm=Norm(2, 3, max_len=4)))
    assert loss.item() == pytest.approx(5.5 / (2 * 4))


def test_pg_gradient_is_minus_advantage_over_tokens():
    lp = LP.clone().requires_grad_(True)
    PGLoss()(inputs(lp))[0].backward()
    assert torch.allclose(lp.grad, torch.tensor([[-2.0, -2.0], [1.0, 0.0]]) / 3)


@pytest.mark.parametrize(
    "adv, ratio, loss, clipped",
    [
        (1.0, 1.5, -1.2, True),  # A > 0, ratio above 1 + eps: capped at 1.2 A, no gradient
        (1.0, 0.5, -0.5, False),  # A > 0, ratio below 1 - eps: the unclipped term is smaller
        (-1.0, 0.5, 0.8, True),  # A < 0, ratio below 1 - eps: capped at 0.8 A
        (-1.0, 1.5, 1.5, False),  # A < 0, ratio above 1 + eps: unclipped, pessimistic
        (2.0, 1.1, -2.2, False),  # inside the trust region
    ],
)
def test_ppo_clip_cases(adv, ratio, loss, clipped):
    old = torch.tensor([[0.0]])
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    out, metrics = PPOClipLoss(clip_eps=0.2)(inputs(lp, old, torch.tensor([adv]), torch.ones(1, 1)))
    assert out.item() == pytest.approx(loss, rel=1e-5)
    out.backward()
    assert metrics["clip_frac"].item() == (1.0 if clipped else 0.0)
    if clipped:
        assert lp.grad.item() == 0.0
    else:
        assert lp.grad.item() == pytest.approx(-adv * ratio, rel=1e-5)  # d(-rA)/dlogp = -rA


def test_ppo_on_policy_gradient_equals_pg():
    lp1 = LP.clone().requires_grad_(True)
    lp2 = LP.clone().requires_grad_(True)
    PPOClipLoss()(inputs(lp1, LP.clone()))[0].backward()
    PGLoss()(inputs(lp2))[0].backward()
    assert torch.allclose(lp1.grad, lp2.grad)


def test_kl_estimators_hand_computed():
    lp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0])
    assert kl_penalty(lp, ref, "k1").tolist() == pytest.approx([1.0, -1.0])
    assert kl_penalty(lp, ref, "k3").tolist() == pytest.approx([math.exp(-1) + 1 - 1, math.exp(1) - 1 - 1])
    assert kl_penalty(lp, lp, "k3").tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="k1"):
        kl_penalty(lp, ref, "k2")


def test_kl_term_is_beta_times_the_aggregated_kl():
    ref = LP - 1.0  # log q/p = -1 everywhere: k3 = e^-1 + 1 - 1 per token
    loss, metrics = KLTerm(beta=0.1, kl_estimator="k3")(inputs(LP), ref)
    assert metrics["kl"].item() == pytest.approx(math.exp(-1))
    assert loss.item() == pytest.approx(0.1 * math.exp(-1))


def test_make_loss_fixes_the_hyper_parameters_each_loss_has():
    assert make_loss("pg", aggregation="seq-mean", clip_eps=0.3) == PGLoss("seq-mean")  # pg has no clip range
    assert make_loss("ppo_clip", aggregation="constant", clip_eps=0.3) == PPOClipLoss(0.3, "constant")
    with pytest.raises(ValueError, match="ppo_clip"):
        make_loss("ppo")


@pytest.mark.parametrize("mode", AGGREGATIONS)
def test_micro_batch_parts_add_up_to_full_batch(mode):
    g = torch.Generator().manual_seed(1)
    values = torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    mask[:, 0] = 1.0
    full = aggregate(values, mask, mode, Norm(6, float(mask.sum()), 5))
    norm = Norm(6, float(mask.sum()), 5)
    parts = aggregate(values[:2], mask[:2], mode, norm) + aggregate(values[2:], mask[2:], mode, norm)
    assert parts.item() == pytest.approx(full.item(), abs=1e-6)


def test_unknown_aggregation_lists_valid():
    with pytest.raises(ValueError, match="token-mean"):
        aggregate(LP, MASK, "sum")
