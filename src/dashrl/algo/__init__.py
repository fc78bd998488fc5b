"""Pure math of the method: advantages, gradient filtering, losses, KL, the SFT loss (torch only),
and the registry of algorithms (`dashrl.algo.registry`, standard library only).

The torch names load on first use, so `dashrl.algo.registry` (what the config reads) imports
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "gradient_filter": "advantages",
    "group_advantages": "advantages",
    "AGGREGATIONS": "losses",
    "LOSSES": "losses",
    "KLTerm": "losses",
    "LossInputs": "losses",
    "LossOutput": "losses",
    "Norm": "losses",
    "PGLoss": "losses",
    "PPOClipLoss": "losses",
    "aggregate": "losses",
    "kl_penalty": "losses",
    "make_loss": "losses",
    "sft_loss": "sft",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'dashrl.algo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dashrl.algo.{_HOMES[name]}"), name)
