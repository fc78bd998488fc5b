"""dashrl: fast RL for reasoning language models (DASH, GRPO, PPO baselines).

Importing this package is cheap: it pulls in only the standard library. Heavy
modules (torch, transformers) load inside the code that needs them.

The Python API: `dashrl.train(overrides, dataset=..., reward_funcs=[...], reward_weights=[...])`
(`dashrl.train.api.train`, also with `environment_factory=` and `tools=`); custom tasks and rewards are in
docs/custom-tasks.md, environments and tools (`dashrl.tools.python`) in docs/environments.md.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`dashrl.train`: the training package, callable as the Python API (`dashrl.train.api.train`);
    `dashrl.tools`: the built-in tools (`dashrl.tools.python`), loaded when first named.

    >>> import dashrl
    >>> callable(dashrl.train), callable(dashrl.tools.python)
    (True, True)
    """
    if name in ("train", "tools"):
        import importlib

        return importlib.import_module(f"dashrl.{name}")
    raise AttributeError(f"module 'dashrl' has no attribute {name!r}")
