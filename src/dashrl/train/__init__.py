"""The training loop, logprob computation, micro-batching, checkpoints and metrics.

The package itself is callable: `dashrl.train(overrides, dataset=..., reward_funcs=[...])` is
`dashrl.train.api.train` (a module and a function cannot share the name `dashrl.train`
otherwise, as importing any `dashrl.train.*` module rebinds it to the package).
"""

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from dashrl.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
