"""dashrl: fast RL for reasoning language models (DASH, GRPO, PPO baselines).

Importing this package is cheap: it pulls in only the standard library. Heavy
modules (torch, transformers) load inside the code that needs them.

The Python API: `dashrl.train(overrides, dataset=..., reward_funcs=[...], reward_weights=[...])`
(`dashrl.train.api.train`); custom tasks and rewards are in docs/custom-tasks.md.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """`dashrl.train`: the training package, callable as the Python API (`dashrl.train.api.train`).

    >>> import dashrl
    >>> callable(dashrl.train)
    True
    """
    if name == "train":
        import importlib

        return importlib.import_module("dashrl.train")
    raise AttributeError(f"module 'dashrl' has no attribute {name!r}")
