"""The `hf` sampler backend: batched decoding with a Hugging Face causal LM's KV cache.

A short decode loop of our own rather than `model.generate`, because it gives what RL
needs directly: the sampling policy's per-token logprobs without keeping whole score
tensors, an explicit seeded generator (same seed, same samples), rows dropped from
the batch as soon as they finish, and no logits computed for prompt positions.

Prompts are left-padded; position ids skip the padding, exactly as the trainer's
forward pass does, so its recomputed logprobs match the sampler's. Each distinct prompt
is pre-filled once (a group's G rows share it) and the KV cache lives in buffers sized
for the whole decode, written in place, rather than re-concatenated at every step.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch

import dashrl.rollout.decode as decode
from dashrl.rollout.base import Completion, SamplingParams

try:
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover - transformers before the per-layer cache classes
    DynamicLayer = None


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row of `logits [B, V]`; return `(tokens [B], logprobs [B])`.

    Logprobs are log softmax(logits / temperature) of the drawn token, before
    top-p/top-k truncation (temperature 0: greedy, logprobs at temperature 1).

    >>> toks, lps = sample_tokens(torch.tensor([[0.0, 5.0]]), 0.0, 1.0, 0, None)
    >>> toks.tolist()
    [1]
    """
    logits = logits.float()
    if temperature == 0:
        tokens = logits.argmax(dim=-1)  # [B]
        return tokens, torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None]).squeeze(1)
    scaled = logits / temperature if temperature != 1.0 else logits  # [B, V]
    logp = torch.log_softmax(scaled, dim=-1)  # [B, V]
    if (top_k <= 0 or top_k >= scaled.shape[-1]) and top_p >= 1.0:
        probs = logp.exp()  # [B, V] the untruncated distribution: no second softmax
    else:
        masked = scaled
        if 0 < top_k < scaled.shape[-1]:
            kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
            masked = masked.masked_fill(masked < kth, float("-inf"))
        if top_p < 1.0:
            sorted_logits, order = masked.sort(dim=-1, descending=True)  # [B, V]
            sorted_probs = sorted_logits.softmax(dim=-1)
            drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) > top_p  # keep the token that crosses top_p
            drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
            masked = masked.masked_fill(drop, float("-inf"))
        probs = torch.softmax(masked, dim=-1)  # [B, V]
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device)  # [B, 1]
    tokens = inverse_cdf(probs, u)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor, block: int = 256) -> torch.Tensor:
    """Token whose cumulative probability first exceeds `u * total` in each row of `probs [B, V]`.

    One uniform per row (torch.multinomial draws an exponential per vocabulary entry, ~20x
    slower here for a 49k vocabulary). Two levels: a cumsum over block sums picks the block,
    a cumsum inside that block picks the token, so no [B, V] cumsum is ever formed.

    >>> inverse_cdf(torch.tensor([[0.2, 0.0, 0.5, 0.3]]), torch.tensor([[0.65]]), block=2).tolist()
    [2]
    """
    B, V = probs.shape  # noqa: N806
    nb = -(-V // block)
    blocks = torch.nn.functional.pad(probs, (0, nb * block - V)).view(B, nb, block)  # [B, nb, block]
    block_sums = blocks.sum(-1)  # [B, nb]
    block_cdf = block_sums.cumsum(-1)  # [B, nb]
    target = u * block_cdf[:, -1:]  # [B, 1]
    b = torch.minimum(torch.searchsorted(block_cdf, target), _last_positive(block_sums))  # [B, 1] (rounding guard)
    before = block_cdf.gather(1, b) - block_sums.gather(1, b)  # [B, 1] mass of the earlier blocks
    row = blocks[torch.arange(B, device=probs.device), b.squeeze(1)]  # [B, block]
    j = torch.minimum(torch.searchsorted(row.cumsum(-1), target - before), _last_positive(row))  # [B, 1]
    return (b * block + j).squeeze(1)  # [B]


def _last_positive(x: torch.Tensor) -> torch.Tensor:
    """Index of the last positive entry of each row of `x [B, N]`, as [B, 1]."""
    idx = torch.arange(x.shape[-1], device=x.device)
    return torch.where(x > 0, idx, 0).amax(-1, keepdim=True)


# How the decode steps run: `static` (rollout/decode.py: shared-prefix attention, fused
# projections, batch buckets; Llama-family models) or `plain` (through the transformers model).
DECODERS = ("static", "plain")


class HFSampler:
    """Sampler over a transformers causal LM.

    With `dtype="fp32"` it decodes with the model it is given (the trainer's own one, then
    nothing to sync; `dashrl.policy.Policy.sampler_model` gives a merged copy for LoRA). With
    `dtype="bf16"` it keeps its own pure-bf16 copy of the weights, like an inference
    worker: decoding in bf16 weights is ~25% faster here than under autocast, and
    `load_weights` refreshes the copy in one `load_state_dict` call per step.

    >>> s = HFSampler(model, tok)  # doctest: +SKIP
    >>> s.generate([tok.encode("2+2=")] * 4, SamplingParams(max_new_tokens=8), seed=0)  # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        dtype: str = "fp32",
        stop_ids: Sequence[int] | None = None,
        decoder: str = "static",
    ):
        from dashrl.models import stop_token_ids

        if decoder not in DECODERS:
            raise ValueError(f"unknown hf decoder {decoder!r}; valid: {sorted(DECODERS)}")
        self.decoder = decoder
        self.share_prefix = True  # static decoder: one copy of a group's prompt KV (False: one per row, for A/B runs)
        self.buckets: Sequence[int] = decode.BUCKETS  # static decoder: batch sizes a shrinking batch is compacted to
        self.prepack = True  # static decoder: bf16 CPU weights reordered once per call for oneDNN (False: for A/B runs)
        self.compile = False  # static decoder: torch.compile the per-layer code around attention (see bench --sampling)
        self._compiled: Any = None
        self.model = model
        if dtype == "bf16" and next(model.parameters()).dtype != torch.bfloat16:
            self.model = copy.deepcopy(model).to(torch.bfloat16).requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        own = self.model.state_dict()
        if all(k in own and own[k].data_ptr() == v.data_ptr() for k, v in state.items()):
            return  # the very tensors it decodes with (the trainer's own fp32 model): already current
        self.model.load_state_dict(state, strict=True)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int = 0
    ) -> list[Completion]:
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        packed = None
        if self.decoder != "plain" and decode.supports(self.model):
            if self.compile and self._compiled is None:
                self._compiled = decode.compile_steps()
            packed = decode.pack(
                self.model, self._compiled if self.compile else None, self.prepack
            )  # fused, refreshed every call
        try:
            for s in range(0, len(prompts), params.batch_size):
                gen = torch.Generator(device=self._device).manual_seed(int(seed) * 1_000_003 + start + s)
                out.extend(self._generate_chunk(prompts[s : s + params.batch_size], params, gen, packed))
        finally:
            self.model.train(was_training)
        return out

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _generate_chunk(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, gen: torch.Generator, packed: Any = None
    ) -> list[Completion]:
        dev = self._device
        B, L = len(prompts), max(len(p) for p in prompts)
        input_ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        attn = torch.zeros((B, L), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, L - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            attn[i, L - len(p) :] = 1
        input_ids, attn = input_ids.to(dev), attn.to(dev)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [B, L]
        stop = torch.as_tensor(self.stop_ids, device=dev)
        tokens = torch.full((B, params.max_new_tokens), self.pad_id, dtype=torch.long)
        logps = torch.zeros((B, params.max_new_tokens))
        lengths = torch.zeros(B, dtype=torch.long)
        stopped = torch.zeros(B, dtype=torch.bool)

        # Prefill each distinct prompt once (a group's G rows share one), then copy its KV rows.
        first: dict[tuple[int, ...], int] = {}
        rows_of = torch.tensor([first.setdefault(tuple(p), i) for i, p in enumerate(prompts)], device=dev)  # [B]
        uniq = rows_of.unique()  # sorted first occurrences
        # An index tensor (not the int 1) makes transformers gather a contiguous last hidden
        # state: with a strided slice the LM-head matmul copies its weight once per row.
        last = torch.tensor([L - 1], device=dev)
        out = self.model(
            input_ids=input_ids[uniq],
            attention_mask=attn[uniq],
            position_ids=pos[uniq],
            use_cache=True,
            logits_to_keep=last,
        )
        expand = torch.searchsorted(uniq, rows_of)  # [B]: row of the prefill batch each row copies
        logits = out.logits[:, -1][expand]  # [B, V]
        record = (tokens, logps, lengths, stopped)
        if packed is not None:
            self._decode_static(packed, out.past_key_values, attn[uniq], expand, logits, params, gen, stop, record)
        else:
            self._decode_plain(out.past_key_values, attn, pos, expand, logits, params, gen, stop, record)
        return self._completions(*record)

    def _decode_static(
        self, packed: Any, cache: Any, prefix_attn: torch.Tensor, expand: torch.Tensor, logits: torch.Tensor,
        params: SamplingParams, gen: torch.Generator, stop: torch.Tensor, record: tuple[torch.Tensor, ...],
    ) -> None:  # fmt: skip
        """Decode with `rollout/decode.py`: one copy of each prompt's KV, rows compacted at bucket boundaries."""
        dtype = packed.embed.dtype
        mask = torch.zeros(prefix_attn.shape, dtype=dtype, device=prefix_attn.device)  # [P, L]
        mask = mask.masked_fill(prefix_attn == 0, float("-inf"))[:, None, None]  # [P, 1, 1, L]
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        state = decode.DecodeState(
            packed, kv, mask, prefix_attn.sum(-1), expand, params.max_new_tokens, self.share_prefix
        )
        live = torch.arange(len(expand), device=expand.device)  # [n] batch rows still decoding, in prompt order
        feed = torch.full(
            (len(expand),), self.pad_id, dtype=torch.long, device=expand.device
        )  # [B] next input per batch row
        for t in range(params.max_new_tokens):
            tok, lp = sample_tokens(logits, params.temperature, params.top_p, params.top_k, gen)  # live rows only
            done = _record(record, state.rows[live].cpu(), t, tok, lp, stop)
            if t + 1 == params.max_new_tokens or bool(done.all()):
                break
            live, tok = live[~done], tok[~done]
            feed[live] = tok
            size = decode.next_bucket(len(live), len(feed), self.buckets)
            if size < len(feed):  # compact: the live rows, then finished ones up to the bucket size
                dead = torch.ones(len(feed), dtype=torch.bool, device=feed.device)
                dead[live] = False
                keep = torch.cat([live, dead.nonzero().squeeze(1)[: size - len(live)]]).sort().values
                state.compact(keep, filled=t)
                live = torch.searchsorted(keep, live)
                feed = feed[keep]
            logits = state.logits(state.step(feed, t)[live])  # [n, V]

    def _decode_plain(
        self, cache: Any, attn: torch.Tensor, pos: torch.Tensor, expand: torch.Tensor, logits: torch.Tensor,
        params: SamplingParams, gen: torch.Generator, stop: torch.Tensor, record: tuple[torch.Tensor, ...],
    ) -> None:  # fmt: skip
        """Decode through the transformers model: each row with its own copy of the prompt's KV."""
        dev = attn.device
        B, L = attn.shape  # noqa: N806
        alive = torch.arange(B, device=dev)  # original row of each row still decoding
        cache = _preallocated(cache, expand, L + params.max_new_tokens)
        last_pos = pos[:, -1:]
        for t in range(params.max_new_tokens):
            tok, lp = sample_tokens(logits, params.temperature, params.top_p, params.top_k, gen)
            done = _record(record, alive.cpu(), t, tok, lp, stop)
            if t + 1 == params.max_new_tokens or bool(done.all()):
                break
            if bool(done.any()):  # drop finished rows from the batch and the KV cache
                keep = (~done).nonzero().squeeze(1)
                alive, tok, attn, last_pos = alive[keep], tok[keep], attn[keep], last_pos[keep]
                _select_rows(cache, keep)
            attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            out = self.model(
                input_ids=tok[:, None],
                attention_mask=attn,
                position_ids=last_pos,
                past_key_values=cache,
                use_cache=True,
            )
            cache, logits = out.past_key_values, out.logits[:, -1]

    def _completions(
        self, tokens: torch.Tensor, logps: torch.Tensor, lengths: torch.Tensor, stopped: torch.Tensor
    ) -> list[Completion]:
        results = []
        for i in range(len(tokens)):
            n = int(lengths[i])
            ids = tokens[i, :n].tolist()
            results.append(
                Completion(
                    token_ids=ids,
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    logprobs=logps[i, :n].tolist(),
                    finish_reason="stop" if bool(stopped[i]) else "length",
                )
            )
        return results


def _record(
    record: tuple[torch.Tensor, ...],
    rows: torch.Tensor,
    t: int,
    tok: torch.Tensor,
    lp: torch.Tensor,
    stop: torch.Tensor,
) -> torch.Tensor:
    """Write step `t`'s tokens and logprobs of chunk rows `rows`; return which of them stopped."""
    tokens, logps, lengths, stopped = record
    tokens[rows, t] = tok.cpu()
    logps[rows, t] = lp.float().cpu()
    lengths[rows] = t + 1
    done = torch.isin(tok, stop)
    stopped[rows[done.cpu()]] = True
    return done


def _preallocated(cache: Any, rows: torch.Tensor, capacity: int) -> Any:
    """Copy rows `rows` of a fresh prefill cache into buffers sized for the whole decode.

    Appending then writes in place instead of re-concatenating every layer's keys and
    values at every step (a cost that grows with the sequence). Caches of other layouts
    (older transformers, sliding windows) are only row-selected and keep growing by cat.
    """
    layers = getattr(cache, "layers", None)
    if _PreallocatedLayer is None or not layers or any(type(layer) is not DynamicLayer for layer in layers):
        _select_rows(cache, rows)
        return cache
    cache.layers = [_PreallocatedLayer(layer.keys[rows], layer.values[rows], capacity) for layer in layers]
    return cache


_PreallocatedLayer: Any = None
if DynamicLayer is not None:

    class _PreallocatedLayer(DynamicLayer):  # type: ignore[no-redef]
        """A KV-cache layer whose keys/values are views into buffers of fixed capacity."""

        def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):
            super().__init__()
            B, H, n, D = keys.shape  # noqa: N806
            self._k = keys.new_empty((B, H, capacity, D))
            self._v = values.new_empty((B, H, capacity, D))
            self._k[:, :, :n] = keys
            self._v[:, :, :n] = values
            self.n = n
            self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
            self._views()

        def _views(self) -> None:
            self.keys, self.values = self._k[:, :, : self.n], self._v[:, :, : self.n]

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            m = key_states.shape[-2]
            if self.n + m > self._k.shape[2]:
                raise RuntimeError(f"KV buffer full: {self.n} + {m} > {self._k.shape[2]}")
            self._k[:, :, self.n : self.n + m] = key_states
            self._v[:, :, self.n : self.n + m] = value_states
            self.n += m
            self._views()
            return self.keys, self.values

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            k = self._k.new_empty((len(indices), *self._k.shape[1:]))
            v = self._v.new_empty((len(indices), *self._v.shape[1:]))
            k[:, :, : self.n] = self._k[indices, :, : self.n]  # copy the filled part only
            v[:, :, : self.n] = self._v[indices, :, : self.n]
            self._k, self._v = k, v
            self._views()


def _select_rows(cache: Any, keep: torch.Tensor) -> None:
    """Keep only rows `keep` of a transformers KV cache, in place."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(keep)
        return
    for layer in cache.layers:  # pragma: no cover - older/newer cache layouts
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)
