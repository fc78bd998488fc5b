"""The `[model]` section: which model, its compute dtype (`auto` resolved here, once, from what the
machine computes natively) and an optional chat template file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dashrl.config.errors import _check, _choice
from dashrl.runtime.kernels import native_bf16


@dataclass(frozen=True)
class ModelConfig:
    name: str = "smollm2-135m"
    """Policy model: a Hugging Face hub id, a local folder, or `smollm2-135m` (the offline default)."""
    dtype: str = "auto"
    """Compute dtype for sampling and backprop: `bf16` (autocast, fp32 master weights) or `fp32`;
    `auto` is `bf16` where the machine computes it natively (an NVIDIA GPU, a CPU with AVX-512 BF16
    or AMX) and `fp32` elsewhere (an AVX2-only CPU emulates bf16 at about 1/80 of fp32's speed).
    The run's config.toml keeps the value chosen, so a resumed run computes as it began."""
    attn: str = "sdpa"
    """Attention implementation passed to transformers: `sdpa` or `eager`."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward to save memory (slower)."""
    chat_template: str = ""
    """A Jinja chat template file that replaces the model's own, for prompts and multi-turn
    conversations (e.g. one that renders tools, docs/environments.md); empty = the model's."""

    def __post_init__(self) -> None:
        _choice("model.dtype", self.dtype, ("auto", "bf16", "fp32"))
        if self.dtype == "auto":
            object.__setattr__(self, "dtype", "bf16" if native_bf16() else "fp32")
        _choice("model.attn", self.attn, ("sdpa", "eager"))
        if self.chat_template:
            path = Path(self.chat_template).expanduser().resolve()
            _check(path.is_file(), "model.chat_template", f"no such file: {self.chat_template}")
            object.__setattr__(self, "chat_template", str(path))
