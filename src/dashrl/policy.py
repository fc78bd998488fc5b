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

Sharded (`shard=True`, `dist.shard = "full"`, in the Ray trainer actors of one
torch.distributed group): FSDP2 (`fully_shard`) per decoder layer, then the whole model;
parameters, gradients and AdamW state are DTensor shards. What changes for the callers:
- the logprob pass gets its hidden states from `decoder_states`, which runs the model's
  own forward (FSDP gathers and frees each layer around it; after that forward the head
  weight stays gathered for the chunked head and its gradient);
- `state_dict()` gathers the whole weights (every rank calls it; a rank that does not
  publish keeps none of them) and `load_state_dict()` takes whole weights and keeps each
  rank's shard; `gather` / `shard_optimizer_state` do the same for the optimizer state,
  so publish, restore and checkpoints hold the replicated layout (`docs/sharding.md`);
- `lockstep(n)`: every rank must run as many forward/backward passes as every other
  (each is collective), so a rank with fewer micro-batches runs empty ones;
- `clip_grad_norm` takes the norm over all shards.
"""

from __future__ import annotations

import contextlib
import copy
import json
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

ADAPTER = "default"  # peft's adapter name
ADAPTER_FILE = "adapter_model.safetensors"
MERGED = "merged"  # subfolder of a LoRA checkpoint holding the merged model (lora.save_merged)


class Policy:
    """The model being trained, with (`lora.r > 0`) or without LoRA adapters.

    >>> p = Policy(model)  # doctest: +SKIP
    >>> opt = torch.optim.AdamW(p.parameters())  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        lora: Any = None,
        seed: int = 0,
        reference: bool = False,
        ref_dtype: str = "fp32",
        shard: bool = False,
    ):
        self.lora = lora is not None and lora.r > 0
        self.sharded = shard
        self.dtype = ref_dtype  # the run's compute dtype (model.dtype): bf16 autocast, and the reference's
        self.save_merged = self.lora and lora.save_merged
        self.module = _with_adapters(model, lora, seed) if self.lora else model
        self.model = self.module.get_base_model() if self.lora else model  # the causal LM (adapters injected in place)
        self._ref = None
        if reference and not self.lora:  # frozen copy of the initial policy, only when the KL term is on
            self._ref = copy.deepcopy(model).requires_grad_(False).eval()
            if ref_dtype == "bf16":
                self._ref.to(torch.bfloat16)
        if shard:
            if self.lora:
                raise ValueError("a LoRA policy is not sharded (dist.shard full needs lora.r = 0)")
            for m in (self._ref, self.model):
                if m is not None:
                    _fully_shard(m)

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

    def autocast(self) -> Any:
        """bf16 autocast on the model's device when the run computes in bf16, else a no-op context."""
        if self.dtype != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(device_type=next(self.model.parameters()).device.type, dtype=torch.bfloat16)

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
    def state_dict(self, keep: bool = True) -> dict[str, torch.Tensor]:
        """The trained weights: the whole model, or the adapters only (LoRA). Sharded: the
        whole weights, gathered (a collective: every rank calls it); `keep=False` drops
        each gathered tensor at once (a rank that does not publish) and gives None for it."""
        if self.sharded:
            state = self.model.state_dict()  # a tied weight: one DTensor per key, each gathered once here
            first: dict[int, str] = {}
            owner = {
                name: first.setdefault(id(p), name) for name, p in self.model.named_parameters(remove_duplicate=False)
            }
            whole = self.gather({k: v for k, v in state.items() if owner.get(k, k) == k}, keep)
            return {k: whole[owner.get(k, k)] for k in state}
        if not self.lora:
            return self.model.state_dict()
        return {k: v for k, v in self.module.state_dict().items() if "lora_" in k}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load what `state_dict()` gave, exactly (every key must match). Sharded: each rank
        keeps its own shard of the whole weights (no communication)."""
        if self.sharded:
            _load_shards(self.model, state)
            return
        if not self.lora:
            self.model.load_state_dict(state, strict=True)
            return
        result = self.module.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"adapter weights do not match the model: missing {missing[:3]}, unexpected "
                f"{result.unexpected_keys[:3]}"
            )

    # -- sharding ------------------------------------------------------------------------------
    def gather(self, obj: Any, keep: bool = True) -> Any:
        """`obj` (a state dict, an optimizer state, nested) with every shard replaced by the
        whole tensor (one all-gather each, in the same order on every rank); tensors that
        were one tensor stay one. `keep=False`: None instead, each whole tensor freed at once."""
        from torch.distributed.tensor import DTensor

        seen: dict[int, torch.Tensor | None] = {}

        def full(x: Any) -> Any:
            if isinstance(x, DTensor):
                if id(x) not in seen:
                    whole = x.full_tensor()
                    seen[id(x)] = whole if keep else None
                return seen[id(x)]
            if isinstance(x, dict):
                return {k: full(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return type(x)(full(v) for v in x)
            return x

        return full(obj)

    def shard_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """After `optimizer.load_state_dict(whole)`: keep of each whole moment only this
        rank's shard, laid out as its parameter (no communication)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        for p, state in optimizer.state.items():
            if not isinstance(p, DTensor):
                continue
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and not isinstance(v, DTensor) and v.shape == p.shape:
                    state[k] = distribute_tensor(v.to(p.dtype), p.device_mesh, p.placements, src_data_rank=None)

    def lockstep(self, n: int) -> int:
        """How many empty micro-batches this rank runs after its `n`: as many as the rank
        with the most has more (0 when not sharded)."""
        if not self.sharded:
            return 0
        import torch.distributed as dist

        most = torch.tensor([n], dtype=torch.long, device=next(self.model.parameters()).device)  # nccl: a GPU tensor
        dist.all_reduce(most, op=dist.ReduceOp.MAX)
        return int(most) - n

    def clip_grad_norm(self, params: list[torch.nn.Parameter], max_norm: float) -> float:
        """Scale the gradients of `params` to total 2-norm at most `max_norm`; returns the norm
        before (over all shards when sharded: every rank gets the same)."""
        return clip_grad_norm(params, max_norm, multi_tensor=not self.sharded)

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


def clip_grad_norm(params: Sequence[torch.nn.Parameter], max_norm: float, multi_tensor: bool = True) -> float:
    """Scale the gradients of `params` to a total 2-norm of at most `max_norm`; returns the norm before.

    `torch.nn.utils.clip_grad_norm_`'s computation through its multi-tensor path, which torch
    leaves off on CPU: the same per-tensor norms and scaling (bit-identical,
    tests/unit/test_optim.py), about 2x faster on 135M parameters. Sharded (DTensor) gradients
    give the norm over all shards, the same on every rank (`multi_tensor=False` there).
    """
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    foreach = multi_tensor and all(g.device.type in ("cpu", "cuda") for g in grads)
    total = torch.nn.utils.get_total_norm(grads, 2.0, foreach=foreach)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=foreach)
    return float(total)


def make_policy(cfg: Any, model: Any, reference: bool | None = None, shard: bool = False) -> Policy:
    """The run's policy around `model` (`cfg.lora`, seeded by `cfg.train.seed`); with a KL
    reference when `cfg.algo.beta > 0` unless `reference` says otherwise; sharded over the
    torch.distributed group with `shard` (a trainer actor of `dist.shard = "full"`)."""
    ref = cfg.algo.beta > 0 if reference is None else reference
    return Policy(model, cfg.lora, cfg.train.seed, reference=ref, ref_dtype=cfg.model.dtype, shard=shard)


def as_policy(model: Any) -> Policy:
    """`model` itself if it is a Policy, else a full fine-tuning Policy around it."""
    return model if isinstance(model, Policy) else Policy(model)


def decoder_states(model: Any, **inputs: Any) -> Any:
    """The decoder's output for `inputs` (`last_hidden_state`, `past_key_values`), without
    the LM head: `model.base_model(**inputs)`. A sharded model runs its own forward instead
    (FSDP gathers the weights in hooks around it; the inner decoder alone would meet
    sharded embeddings), with the logits of one position only, and the decoder's output is
    taken as it passes."""
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        return model.base_model(**inputs)
    seen: list[Any] = []
    hook = model.base_model.register_forward_hook(lambda module, args, out: seen.append(out))
    try:
        model(**inputs, logits_to_keep=1)
    finally:
        hook.remove()
    return seen[0]


def _fully_shard(model: Any) -> None:
    """FSDP2 over the default torch.distributed group: each decoder layer its own unit (gathered
    only while it runs), then the rest (embeddings, final norm, head). Gradients are summed
    over ranks, not averaged: the loss is already normalised by the whole batch, as the
    replicated trainers' all-reduce sums."""
    from torch.distributed.fsdp import FSDPModule, fully_shard

    layers = getattr(model.base_model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__}: no decoder layers at .base_model.layers to shard")
    for layer in layers:
        fully_shard(layer)
    fully_shard(model)
    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.set_gradient_divide_factor(1.0)
            m.set_force_sum_reduction_for_comms(True)  # gloo has no pre-multiplied sum


def _load_shards(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Copy into each sharded parameter and buffer of `model` its rank's part of the whole tensor in `state`."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    own = model.state_dict()
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if missing or unexpected:
        raise ValueError(f"weights do not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for k, t in own.items():
            if isinstance(t, DTensor):
                part = distribute_tensor(state[k].to(t.dtype), t.device_mesh, t.placements, src_data_rank=None)
                t.to_local().copy_(part.to_local())
            else:
                t.copy_(state[k])


def _with_adapters(model: Any, lora: Any, seed: int) -> Any:
    """`model` with LoRA adapters injected in place (peft), drawn from the seeded RNG."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.target_modules, bias="none"
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )  # peft asks transformers' old name
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
