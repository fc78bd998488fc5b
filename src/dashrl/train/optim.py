"""The run's optimizer: torch's AdamW in the implementation `train.optimizer` names, its state made at start-up.

- `adamw_fused` (the default): torch's fused kernel, one vectorised pass over each tensor. On a
  2-core CPU it steps 135M parameters 5-9x faster than the loop. It is not bit-identical to
  the loop: it evaluates the same update with its operations in another order, so some weights
  differ in their last bit after a step (about 2e-7 relative). It repeats bit for bit itself,
  and a run resumes on it bit for bit.
- `adamw_foreach`: torch's multi-tensor implementation; bit-identical to the loop (checked in
  tests/unit/test_optim.py), about 1.5x faster than it.
- `adamw`: torch's per-parameter loop, what torch picks on CPU by default: the reference.

The state (two moments and a step count per parameter) is allocated at start-up, as torch would
allocate it inside the first `step()`, so that step 1 does not pay for 2 x 4 bytes per parameter
of fresh memory; the first step then equals that of a lazily built optimizer bit for bit.
"""

from __future__ import annotations

from typing import Sequence

import torch

IMPLEMENTATIONS: dict[str, dict[str, bool]] = {
    "adamw_fused": {"fused": True},
    "adamw_foreach": {"foreach": True},
    "adamw": {"foreach": False},
}


def make_optimizer(
    params: Sequence[torch.nn.Parameter], name: str, lr: float, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over `params` in implementation `name`, with its state already allocated.

    >>> opt = make_optimizer([torch.nn.Parameter(torch.ones(2))], "adamw_fused", 1e-3, 0.0)
    >>> sorted(opt.state_dict()["state"][0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(IMPLEMENTATIONS)}")
    kwargs = IMPLEMENTATIONS[name]
    if kwargs.get("fused") and any(p.device.type not in ("cpu", "cuda") for p in params):
        kwargs = {"foreach": True}  # no fused kernel there: the multi-tensor path, bit-identical to the loop
    own_memory(params)
    opt = torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay, **kwargs)
    preallocate(opt)
    return opt


def own_memory(params: Sequence[torch.nn.Parameter]) -> None:
    """Copy each plain CPU parameter into memory of the process's own, in place of whatever held it.

    transformers loads safetensors weights as views of the file mapped copy-on-write, so the
    first optimizer step, the first write to each page, faulted in and copied every page: 1.1 s
    for SmolLM2-135M's 540 MB, inside step 1. A copy here takes 0.24 s, at start-up. The values
    are the same bits; a tied weight stays one parameter. Sharded (DTensor) and accelerator
    parameters already live in memory of their own and are left alone.

    >>> p = torch.nn.Parameter(torch.arange(3.0))
    >>> before = p.data_ptr()
    >>> own_memory([p])
    >>> p.data_ptr() != before, p.tolist()
    (True, [0.0, 1.0, 2.0])
    """
    with torch.no_grad():
        for p in params:
            if type(p.data) is torch.Tensor and p.device.type == "cpu":
                p.data = p.data.clone(memory_format=torch.preserve_format)


def preallocate(opt: torch.optim.Optimizer) -> None:
    """Create AdamW's per-parameter state as its first `step()` would (zero moments, step 0).

    Mirrors `torch.optim.Adam._init_group`: the step count is a 0-d fp32 tensor on the
    parameter's device for the fused and capturable kernels, else on the CPU in the default
    float dtype. A parameter that already has state keeps it.
    """
    for group in opt.param_groups:
        on_device = bool(group.get("fused") or group.get("capturable"))
        for p in group["params"]:
            state = opt.state[p]
            if state:
                continue
            if on_device:
                step = torch.zeros((), dtype=torch.float32, device=p.device)
            else:
                step = torch.tensor(
                    0.0,
                    dtype=torch.get_default_dtype() if torch.get_default_dtype() == torch.float64 else torch.float32,
                )
            state["step"] = step
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group.get("amsgrad"):
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
