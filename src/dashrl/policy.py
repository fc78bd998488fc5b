"""The trainable model of a run: what every other part asks for instead of reaching into transformers.

A `Policy` gives
- `model`: the causal LM the logprob pass runs (`dashrl.train.logprobs`): its decoder, head
  and config, LoRA layers included when there are any;
- `parameters()`: what the optimizer steps (and the Ray trainers all-reduce);
- `reference()`: the model of the KL term: a frozen copy of the initial weights for full
  fine-tuning, the same model with its adapters switched off for LoRA (no copy);
- `sampler_model()` / `sampler_weights()` / `for_sampler(state)`: a plain transformers model
  and the weights a sampler decodes with (for LoRA: the adapters merged into the base);
- `state_dict()` / `load_state_dict()`: the trained weights (for LoRA: the adapters only), as
  the Ray trainers publish and restore them;
- `save(folder, dtype)` / `load(ckpt, state)`: checkpoint files. Full fine-tuning writes
  `save_pretrained`'s files; LoRA writes peft's own (`adapter_config.json`,
  `adapter_model.safetensors`), which `PeftModel.from_pretrained(base, folder)` loads.

LoRA goes through peft (`lora.r > 0`); its adapters start from seeded random draws
(`train.seed`), so every process of a run builds the same ones.
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

ADAPTER = "default"  # peft's adapter name
ADAPTER_FILE = "adapter_model.safetensors"
MERGED = "merged"  # subfolder of a LoRA checkpoint holding the merged model (lora.save_merged)


class Policy:
    """The model being trained, with (`lora.r > 0`) or without LoRA adapters.

    >>> p = Policy(model)  # doctest: +SKIP
    >>> opt = torch.optim.AdamW(p.parameters())  # doctest: +SKIP
    """

    def __init__(self, model: Any, lora: Any = None, seed: int = 0, reference: bool = False, ref_dtype: str = "fp32"):
        self.lora = lora is not None and lora.r > 0
        self.save_merged = self.lora and lora.save_merged
        self.module = _with_adapters(model, lora, seed) if self.lora else model
        self.model = self.module.get_base_model() if self.lora else model  # the causal LM (adapters injected in place)
        self._ref = None
        if reference and not self.lora:  # frozen copy of the initial policy, only when the KL term is on
            self._ref = copy.deepcopy(model).requires_grad_(False).eval()
            if ref_dtype == "bf16":
                self._ref.to(torch.bfloat16)

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer steps, in module order."""
        return [p for p in self.module.parameters() if p.requires_grad]

    @contextlib.contextmanager
    def reference(self) -> Iterator[Any]:
        """The KL reference model while the context is open."""
        if not self.lora:
            yield self._ref
            return
        with self.module.disable_adapter():
            yield self.model

    # -- what samplers get -------------------------------------------------------------------
    def sampler_model(self) -> Any:
        """A plain transformers model to decode with: the policy's own model (full
        fine-tuning), or a copy with the adapters merged into its weights (LoRA)."""
        if not self.lora:
            return self.model
        return copy.deepcopy(self.module).merge_and_unload().requires_grad_(False).eval()

    def sampler_weights(self) -> dict[str, torch.Tensor]:
        """The state dict of `sampler_model()` at the current weights."""
        if not self.lora:
            return self.model.state_dict()
        return _merged(self.model)

    def for_sampler(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The sampler weights for published weights `state` (a `state_dict()`); loads them
        into this policy when it must merge them."""
        if not self.lora:
            return state
        self.load_state_dict(state)
        return self.sampler_weights()

    # -- trained weights ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained weights: the whole model, or the adapters only (LoRA)."""
        if not self.lora:
            return self.model.state_dict()
        return {k: v for k, v in self.module.state_dict().items() if "lora_" in k}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what `state_dict()` gave, exactly (every key must match)."""
        if not self.lora:
            self.model.load_state_dict(state, strict=True)
            return
        result = self.module.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise ValueError(f"adapter weights do not match the model: missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")

    # -- checkpoint files ----------------------------------------------------------------------
    def save(self, folder: Path, dtype: str = "fp32") -> dict[str, torch.Tensor] | None:
        """Write the weight files into `folder`; returns the exact weights to keep beside them
        when the files are rounded (bf16), else None. LoRA adapters are always written in fp32;
        with `lora.save_merged` the merged model too, in `dtype`, in the subfolder `merged`."""
        if self.lora:
            self.module.save_pretrained(folder)
            if self.save_merged:  # a folder of its own: transformers would apply the adapter beside it again
                _save_model(self.sampler_model(), Path(folder) / MERGED, dtype)
            return None
        _save_model(self.model, Path(folder), dtype)
        return self.model.state_dict() if dtype == "bf16" else None

    def load(self, ckpt: Path, exact: dict[str, torch.Tensor] | None = None) -> None:
        """Load the weights `save` wrote into `ckpt` (or `exact`, the weights it returned)."""
        from safetensors.torch import load_file

        if self.lora:
            path = Path(ckpt) / ADAPTER_FILE
            if not path.is_file():
                raise FileNotFoundError(f"{ckpt} holds no LoRA adapter ({ADAPTER_FILE}); was it saved with --lora.r 0?")
            from peft import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.module, load_file(path))
            missing = [k for k in result.missing_keys if "lora_" in k]
            if missing:
                raise ValueError(f"{ckpt}: adapter weights missing from the checkpoint: {missing[:5]}")
            return
        weights: dict[str, Any] = {}
        if exact is not None:
            weights = dict(exact)
        else:
            files = sorted(Path(ckpt).glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{ckpt} holds no .safetensors weights")
            for f in files:
                weights.update(load_file(f))
        result = self.model.load_state_dict(weights, strict=False)
        if result.unexpected_keys:
            raise ValueError(f"{ckpt}: weights that the model does not have: {result.unexpected_keys[:5]}")
        params = self.model.state_dict()
        loaded_ptrs = {params[k].data_ptr() for k in weights if k in params}
        untied = [k for k in result.missing_keys if params[k].data_ptr() not in loaded_ptrs]
        if untied:
            raise ValueError(f"{ckpt}: weights missing from the checkpoint: {untied[:5]}")


def make_policy(cfg: Any, model: Any, reference: bool | None = None) -> Policy:
    """The run's policy around `model` (`cfg.lora`, seeded by `cfg.train.seed`); with a KL
    reference when `cfg.algo.beta > 0` unless `reference` says otherwise."""
    ref = cfg.algo.beta > 0 if reference is None else reference
    return Policy(model, cfg.lora, cfg.train.seed, reference=ref, ref_dtype=cfg.model.dtype)


def as_policy(model: Any) -> Policy:
    """`model` itself if it is a Policy, else a full fine-tuning Policy around it."""
    return model if isinstance(model, Policy) else Policy(model)


def _with_adapters(model: Any, lora: Any, seed: int) -> Any:
    """`model` with LoRA adapters injected in place (peft), drawn from the seeded RNG."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, bias="none")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)  # peft asks transformers' old name
        torch.manual_seed(seed)
        return get_peft_model(model, config, adapter_name=ADAPTER)


def _merged(model: Any) -> dict[str, torch.Tensor]:
    """The plain model's state dict with each LoRA layer's update added to its base weight."""
    from peft.tuners.lora import LoraLayer

    with torch.no_grad():
        state = {k.replace(".base_layer.", "."): v for k, v in model.state_dict().items() if "lora_" not in k}
        for name, mod in model.named_modules():
            if isinstance(mod, LoraLayer) and ADAPTER in mod.lora_A:
                w = mod.get_base_layer().weight
                state[f"{name}.weight"] = w + mod.get_delta_weight(ADAPTER).to(w.dtype)
    return state


def _save_model(model: Any, folder: Path, dtype: str) -> None:
    """`save_pretrained` in fp32, or with bf16 weights and `dtype = bfloat16` in config.json
    (the model itself, the fp32 master copy, is left as it is)."""
    if dtype != "bf16":
        model.save_pretrained(folder)
        return
    cast: dict[int, Any] = {}  # by storage: tied weights stay one tensor, saved once
    weights = {}
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            v = cast.setdefault(v.data_ptr(), v.to(torch.bfloat16))
        weights[k] = v
    model.save_pretrained(folder, state_dict=weights)
    config = folder / "config.json"
    data = json.loads(config.read_text())
    data["dtype"] = "bfloat16"
    config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
