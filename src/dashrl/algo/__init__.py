"""Pure math of the method: advantages, gradient filtering, losses, KL, the SFT loss (torch only),
and the registry that names the algorithms and their parts (`dashrl.algo.registry`, standard
library only).

The torch names load on first use, so `dashrl.algo.registry` (what the config reads) imports
without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "gradient_filter": "advantages",
    "group_advantages": "advantages",
    "AGGREGATIONS": "registry",
    "ALGORITHMS": "registry",
    "ESTIMATORS": "registry",
    "KL_ESTIMATORS": "registry",
    "LOSSES": "registry",
    "CISPOLoss": "cispo",
    "GSPOLoss": "gspo",
    "LossInputs": "core",
    "LossOutput": "core",
    "Norm": "core",
    "aggregate": "core",
    "KLTerm": "losses",
    "PGLoss": "core",
    "PPOClipLoss": "losses",
    "kl_penalty": "losses",
    "make_loss": "losses",
    "SFTLoss": "sft",
    "sft_loss": "sft",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'dashrl.algo' has no attribute {name!r}")
    return getattr(importlib.import_module(f"dashrl.algo.{_HOMES[name]}"), name)
