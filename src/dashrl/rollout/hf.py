"""The `hf` sampler backend: batched decoding with a Hugging Face causal LM's KV cache.

A short decode loop of our own rather than `model.generate`, because it gives what RL
needs directly: the sampling policy's per-token logprobs without keeping whole score
tensors, an explicit seeded generator (same seed, same samples), rows dropped from
the batch as soon as they finish, and no logits computed for prompt positions.

Prompts are left-padded; position ids skip the padding, exactly as the trainer's
forward pass does, so its recomputed logprobs match the sampler's.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch

from dashrl.rollout import Completion, SamplingParams


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
    scaled = logits / temperature  # [B, V]
    logp = torch.log_softmax(scaled, dim=-1)  # [B, V]
    masked = scaled
    if top_k > 0 and top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        masked = masked.masked_fill(masked < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = masked.sort(dim=-1, descending=True)  # [B, V]
        sorted_probs = sorted_logits.softmax(dim=-1)
        drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) > top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
        masked = masked.masked_fill(drop, float("-inf"))
    # Inverse-CDF draw: one uniform per row (torch.multinomial draws an exponential per
    # vocabulary entry, ~20x slower here for a 49k vocabulary).
    cdf = torch.softmax(masked, dim=-1).cumsum(dim=-1)  # [B, V]
    u = torch.rand((cdf.shape[0], 1), generator=generator, device=cdf.device) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, u).squeeze(1).clamp(max=cdf.shape[-1] - 1)  # [B]
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)


class HFSampler:
    """Sampler over a transformers causal LM.

    With `dtype="fp32"` it decodes with the trainer's own model (nothing to sync). With
    `dtype="bf16"` it keeps its own pure-bf16 copy of the weights, like an inference
    worker: decoding in bf16 weights is ~25% faster here than under autocast, and
    `load_weights` refreshes the copy in one `load_state_dict` call per step.

    >>> s = HFSampler(model, tok)  # doctest: +SKIP
    >>> s.generate([tok.encode("2+2=")] * 4, SamplingParams(max_new_tokens=8), seed=0)  # doctest: +SKIP
    """

    def __init__(self, model: Any, tokenizer: Any, dtype: str = "fp32", stop_ids: Sequence[int] | None = None):
        from dashrl.models import stop_token_ids

        self._source = model
        self.model = model
        if dtype == "bf16" and next(model.parameters()).dtype != torch.bfloat16:
            self.model = copy.deepcopy(model).to(torch.bfloat16).requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.stop_ids = list(stop_ids) if stop_ids is not None else stop_token_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        if self.model is self._source:
            return  # decoding with the trainer's own weights: already current
        self.model.load_state_dict(state, strict=True)

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams, seed: int, start: int = 0
    ) -> list[Completion]:
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for s in range(0, len(prompts), params.batch_size):
                gen = torch.Generator(device=self._device).manual_seed(int(seed) * 1_000_003 + start + s)
                out.extend(self._generate_chunk(prompts[s : s + params.batch_size], params, gen))
        finally:
            self.model.train(was_training)
        return out

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _generate_chunk(self, prompts: Sequence[Sequence[int]], params: SamplingParams, gen: torch.Generator) -> list[Completion]:
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
        alive = torch.arange(B, device=dev)  # original row of each row still decoding

        # An index tensor (not the int 1) makes transformers gather a contiguous last hidden
        # state: with a strided slice the LM-head matmul copies its weight once per row.
        last = torch.tensor([L - 1], device=dev)
        out = self.model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=True, logits_to_keep=last)
        cache, logits = out.past_key_values, out.logits[:, -1]
        last_pos = pos[:, -1:]
        for t in range(params.max_new_tokens):
            tok, lp = sample_tokens(logits, params.temperature, params.top_p, params.top_k, gen)
            rows = alive.cpu()
            tokens[rows, t] = tok.cpu()
            logps[rows, t] = lp.float().cpu()
            lengths[rows] = t + 1
            done = torch.isin(tok, stop)
            stopped[rows[done.cpu()]] = True
            if t + 1 == params.max_new_tokens or bool(done.all()):
                break
            if bool(done.any()):  # drop finished rows from the batch and the KV cache
                keep = (~done).nonzero().squeeze(1)
                alive, tok, attn, last_pos = alive[keep], tok[keep], attn[keep], last_pos[keep]
                _select_rows(cache, keep)
            attn = torch.cat([attn, attn.new_ones((attn.shape[0], 1))], dim=1)
            last_pos = last_pos + 1
            out = self.model(
                input_ids=tok[:, None], attention_mask=attn, position_ids=last_pos, past_key_values=cache, use_cache=True
            )
            cache, logits = out.past_key_values, out.logits[:, -1]

        results = []
        for i in range(B):
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


def _select_rows(cache: Any, keep: torch.Tensor) -> None:
    """Keep only rows `keep` of a transformers KV cache, in place."""
    if hasattr(cache, "batch_select_indices"):
        cache.batch_select_indices(keep)
        return
    for layer in cache.layers:  # pragma: no cover - older/newer cache layouts
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)
