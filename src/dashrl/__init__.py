"""dashrl: fast RL for reasoning language models (DASH, GRPO, PPO baselines).

Importing this package is cheap: it pulls in only the standard library. Heavy
modules (torch, transformers) load inside the code that needs them.
"""

__version__ = "0.1.0"
