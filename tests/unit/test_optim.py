"""The optimizer implementations against torch's per-parameter AdamW loop, and the start-up state."""

from __future__ import annotations

import pytest
import torch

from dashrl.train.optim import make_optimizer

SHAPES = [(37, 19), (19,), (64, 37), (5,)]  # odd sizes: the vector kernels' tails too


def params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def run(opt_of, steps: int, skip: int | None = None) -> list[torch.Tensor]:
    """`steps` AdamW steps on seeded gradients; parameter `skip` gets none in step 0."""
    ps = params()
    opt = opt_of(ps)
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        for i, p in enumerate(ps):
            grad = torch.randn(p.shape, generator=g)
            p.grad = None if (step == 0 and i == skip) else grad
        opt.step()
    return [p.detach().clone() for p in ps]


def lazy(**kw):
    return lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, **kw)


def ours(name):
    return lambda ps: make_optimizer(ps, name, 1e-2, 0.1)


@pytest.mark.parametrize("skip", [None, 1])
def test_foreach_is_bit_identical_to_the_loop(skip):
    ref = run(lazy(foreach=False), 4, skip)
    for a, b in zip(ref, run(ours("adamw_foreach"), 4, skip)):
        assert torch.equal(a, b)
    for a, b in zip(ref, run(ours("adamw"), 4, skip)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("skip", [None, 1])
def test_preallocated_state_steps_as_the_lazy_one_bit_for_bit(skip):
    """State made at start-up gives the same weights as torch's lazy state, for every implementation."""
    for name, kw in (
        ("adamw_fused", {"fused": True}),
        ("adamw_foreach", {"foreach": True}),
        ("adamw", {"foreach": False}),
    ):
        for a, b in zip(run(lazy(**kw), 3, skip), run(ours(name), 3, skip)):
            assert torch.equal(a, b), name


def test_fused_is_the_same_update_up_to_rounding():
    ref = run(lazy(foreach=False), 4)
    start = params()
    for a, b, p0 in zip(ref, run(ours("adamw_fused"), 4), start):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, p0)  # the step moved the weights


def test_state_is_allocated_before_the_first_step_like_torchs():
    ps = params()
    for name, kw in (("adamw_fused", {"fused": True}), ("adamw", {"foreach": False})):
        opt = make_optimizer(ps, name, 1e-2, 0.1)
        assert len(opt.state) == len(ps)
        ref = torch.optim.AdamW(ps, lr=1e-2, **kw)
        for p in ps:
            p.grad = torch.zeros_like(p)
        ref.step()  # torch's own lazy state, after one step
        for p in ps:
            mine, theirs = opt.state[p], ref.state[p]
            assert sorted(mine) == sorted(theirs)
            assert mine["step"].dtype == theirs["step"].dtype and mine["step"].device == theirs["step"].device
            assert float(mine["step"]) == 0.0 and not mine["exp_avg"].any() and not mine["exp_avg_sq"].any()
        for p in ps:
            p.grad = None


def test_a_resumed_optimizer_continues_bit_for_bit():
    """Step 2 of 3, save the state, load it into a fresh optimizer: step 3 as without the stop."""
    whole = run(ours("adamw_fused"), 3)
    ps = params()
    opt = make_optimizer(ps, "adamw_fused", 1e-2, 0.1)
    g = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=g) for p in ps] for _ in range(3)]
    for step in range(2):
        for p, gr in zip(ps, grads[step]):
            p.grad = gr
        opt.step()
    saved = {k: v for k, v in opt.state_dict().items()}
    ps2 = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    opt2 = make_optimizer(ps2, "adamw_fused", 1e-2, 0.1)
    opt2.load_state_dict(saved)
    for p, gr in zip(ps2, grads[2]):
        p.grad = gr
    opt2.step()
    for a, b in zip(whole, ps2):
        assert torch.equal(a, b.detach())


def test_unknown_name_is_one_line():
    with pytest.raises(ValueError, match="valid: adamw_fused, adamw_foreach, adamw"):
        make_optimizer(params(), "sgd", 1e-2, 0.0)


@pytest.mark.parametrize("max_norm", [0.5, float("inf")])
def test_clip_is_bit_identical_to_torchs_default(max_norm):
    from dashrl.policy import clip_grad_norm

    a, b = params(), params()
    g = torch.Generator().manual_seed(2)
    for p, q in zip(a, b):
        p.grad = torch.randn(p.shape, generator=g)
        q.grad = p.grad.clone()
    ref = float(torch.nn.utils.clip_grad_norm_(a, max_norm, foreach=False))
    assert clip_grad_norm(b, max_norm) == ref
    for p, q in zip(a, b):
        assert torch.equal(p.grad, q.grad)
    if max_norm < ref:  # scaled down to the cap
        assert abs(float(torch.cat([q.grad.flatten() for q in b]).norm()) - max_norm) < 1e-5
