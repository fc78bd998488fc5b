"""Per-token logprobs of completions under a model (the trainer's forward pass).

Only the logprob of each chosen token is needed, so the trainer runs the decoder and
applies the LM head here. With `chunk > 0` (`train.head_chunk`) it does so in chunks of
rows (`HeadLogprobs`): no `[tokens, vocab]` logits tensor, fp32 or otherwise, outlives
one chunk, and rows of padding never reach the head. With `chunk = 0` (the default) it
is the model's own head and `token_logprobs`, as before.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from dashrl.policy import decoder_states


@dataclass
class Collated:
    """A micro-batch as tensors: prompts left-padded to P, completions right-padded to T."""

    input_ids: torch.Tensor  # [N, P + T]
    attention_mask: torch.Tensor  # [N, P + T]
    position_ids: torch.Tensor  # [N, P + T]
    completion_ids: torch.Tensor  # [N, T]
    loss_mask: torch.Tensor  # [N, T] 1 on completion tokens trained on (not an environment's, in multi-turn samples)
    old_logprobs: torch.Tensor  # [N, T] sampling policy
    advantages: torch.Tensor  # [N]
    prompt_len: int  # P
    prompt_rows: torch.Tensor  # [N] first row holding the same prompt (rows of one group share it)

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def distinct_tokens(self) -> int:
        """Tokens of the micro-batch's sequences with each group's prompt counted once: the count
        that a backprop MFU rests on. The packed and shared-prompt passes run one position fewer
        per sample (a completion's last token predicts nothing), so by positions run the MFU is
        a few percent lower (docs/performance-short.md)."""
        firsts = torch.unique(self.prompt_rows)
        P = self.prompt_len
        return int(self.attention_mask[firsts, :P].sum()) + int(self.attention_mask[:, P:].sum())

    @property
    def groups(self) -> list[tuple[int, list[int]]]:
        """Each group's (prompt length, its completions' lengths): the sequence lengths that
        `dashrl.runtime.flops.pass_flops` counts a pass's FLOPs from."""
        P = self.prompt_len
        p_len = self.attention_mask[:, :P].sum(1).tolist()
        c_len = self.loss_mask.sum(1).long().tolist()
        out: dict[int, tuple[int, list[int]]] = {}
        for r, owner in enumerate(self.prompt_rows.tolist()):
            out.setdefault(owner, (int(p_len[owner]), []))[1].append(int(c_len[r]))
        return list(out.values())


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) at `targets`: `[N, T, V]`, `[N, T]` -> `[N, T]` (fp32).

    Computed as gathered logit minus logsumexp, so no `[N, T, V]` log-softmax is kept.

    >>> token_logprobs(torch.zeros(1, 1, 4), torch.tensor([[2]]))
    tensor([[-1.3863]])
    """
    if temperature not in (0.0, 1.0):
        logits = logits / temperature
    logits = logits.float()
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [N, T]
    return picked - torch.logsumexp(logits, dim=-1)  # [N, T]


def _head_weight(model: Any) -> torch.Tensor | None:
    """The LM head's weight when the head is a plain bias-free linear map (most causal LMs), else None.

    Heads that scale or soft-cap their logits (Gemma 2, Cohere) go through the model's own head.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    cfg = getattr(model, "config", None)
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    if getattr(cfg, "final_logit_softcapping", None) or getattr(cfg, "logit_scale", None) not in (None, 1.0):
        return None
    return head.weight


def _head_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The model's own logits from its final hidden states, with the scaling or soft-capping its
    forward applies after the head (Cohere's `logit_scale`, Gemma 2's `final_logit_softcapping`)."""
    logits = model.get_output_embeddings()(hidden)
    cfg = getattr(model, "config", None)
    if getattr(cfg, "logit_scale", None) not in (None, 1.0):
        logits = logits * cfg.logit_scale
    cap = getattr(cfg, "final_logit_softcapping", None)
    return torch.tanh(logits / cap) * cap if cap else logits


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a matmul of `t` runs in here: the autocast dtype when autocast is on, else `t`'s own."""
    dev = t.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else t.dtype


class HeadLogprobs(torch.autograd.Function):
    """log softmax(hidden @ weight.T / temperature) at `targets`, `[M, H]`, `[V, H]`, `[M]` -> `[M]` fp32.

    Forward and backward walk the rows in chunks of `chunk`: each chunk's logits are
    made in the compute dtype, turned into fp32 for the log-sum-exp (as the sampler
    does), and dropped; backward makes them again (one more LM-head matmul) instead of
    keeping them. Gradients are those of `token_logprobs` on the full logits, up to
    float rounding: d lp / d logit = onehot(target) - softmax.
    """

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                temperature: float, chunk: int, dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
        with torch.autocast(hidden.device.type, enabled=False):
            h, w = hidden.to(dtype), weight.to(dtype)
            out = torch.empty(h.shape[0], dtype=torch.float32, device=h.device)
            lse = torch.empty_like(out)
            for s in range(0, h.shape[0], chunk):
                logits = _scaled_logits(h[s : s + chunk], w, temperature)  # [c, V] fp32
                lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
                out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, w, targets, lse)  # w: the weight already cast, not cast again in backward
        ctx.temperature, ctx.chunk, ctx.dtype, ctx.weight_dtype = temperature, chunk, dtype, weight.dtype
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        hidden, w, targets, lse = ctx.saved_tensors
        temperature, chunk, dtype = ctx.temperature, ctx.chunk, ctx.dtype
        with torch.autocast(hidden.device.type, enabled=False):
            h = hidden.to(dtype)
            grad_h = torch.empty_like(h)
            grad_w = torch.zeros_like(w, dtype=torch.float32) if h.shape[0] > chunk or not h.shape[0] else None
            for s in range(0, h.shape[0], chunk):
                g = grad_out[s : s + chunk, None].float()  # [c, 1]
                p = _scaled_logits(h[s : s + chunk], w, temperature)
                p.sub_(lse[s : s + chunk, None]).exp_().mul_(-g)  # -g * softmax
                p.scatter_add_(1, targets[s : s + chunk, None], g)  # + g at the target
                if temperature != 1.0:
                    p.div_(temperature)
                gl = p.to(dtype)  # [c, V] gradient of the logits
                grad_h[s : s + chunk] = gl @ w
                part = gl.t() @ h[s : s + chunk]  # [V, H]
                grad_w = part.float() if grad_w is None else grad_w.add_(part)
        return grad_h.to(hidden.dtype), grad_w.to(ctx.weight_dtype), None, None, None, None


def _scaled_logits(h: torch.Tensor, w: torch.Tensor, temperature: float) -> torch.Tensor:
    """fp32 `h @ w.T / temperature` (the product in `h`'s dtype, the division in fp32)."""
    logits = (h @ w.t()).float()
    return logits.div_(temperature) if temperature != 1.0 else logits


def chosen_logprobs(model: Any, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    temperature: float = 1.0, chunk: int = 0) -> torch.Tensor:  # fmt: skip
    """Logprobs `[N, T]` of `targets` from the final hidden states `[N, T, H]`, 0 where `mask` is 0.

    `chunk > 0`: only the masked-in rows go through the LM head, `chunk` rows at a time
    (`HeadLogprobs`). `chunk = 0`, or a head that is not a plain linear map: the model's
    own head over all rows and `token_logprobs`.
    """
    weight = _head_weight(model) if chunk > 0 else None
    if weight is None:
        return token_logprobs(_head_logits(model, hidden), targets, temperature) * mask
    t = 1.0 if temperature in (0.0, 1.0) else temperature
    rows = mask.reshape(-1).nonzero().squeeze(1)  # [M] real tokens
    picked = HeadLogprobs.apply(
        hidden.reshape(-1, hidden.shape[-1])[rows], weight, targets.reshape(-1)[rows], t, chunk, _compute_dtype(hidden)
    )
    return (
        torch.zeros(targets.numel(), dtype=torch.float32, device=hidden.device)
        .index_put((rows,), picked)
        .view_as(targets)
    )


def completion_logprobs(model: Any, batch: Collated, temperature: float = 1.0, chunk: int = 0) -> torch.Tensor:
    """Logprobs `[N, T]` of each completion token given its prompt and earlier tokens (0 on padding).

    Only the T positions that predict completion tokens go through the LM head, not the
    prompt positions: the head over a 49k vocabulary costs as much as several layers.
    """
    T, P = batch.completion_ids.shape[1], batch.prompt_len
    # Index tensor, not a slice: the hidden states are gathered contiguously.
    keep = torch.arange(P - 1, P - 1 + T, device=batch.input_ids.device)
    out = decoder_states(
        model,
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    hidden = out.last_hidden_state[:, keep]  # [N, T, H]: position P-1+t predicts completion token t
    return chosen_logprobs(model, hidden, batch.completion_ids, batch.loss_mask, temperature, chunk)


def shared_prompt_logprobs(model: Any, batch: Collated, temperature: float = 1.0, chunk: int = 0) -> torch.Tensor:
    """Same result as `completion_logprobs`, with each distinct prompt run through the model once.

    The G samples of a group share their prompt, so the prompt's keys and values are
    computed once per group and indexed out to its rows (gradients flow back through
    that indexing into the single prompt pass). With G = 8 and prompts as long as the
    completions this removes ~44% of the tokens of a training forward and backward.
    """
    T, P = batch.completion_ids.shape[1], batch.prompt_len
    uniq, owner = torch.unique(batch.prompt_rows, return_inverse=True)  # [U], [N]
    out = decoder_states(
        model,
        input_ids=batch.input_ids[uniq, :P],
        attention_mask=batch.attention_mask[uniq, :P],
        position_ids=batch.position_ids[uniq, :P],
        use_cache=True,
    )
    hidden = out.last_hidden_state[owner, P - 1 :]  # [N, 1, H]: predicts completion token 0
    if T > 1:
        cache = out.past_key_values  # the name every supported transformers takes, as in rollout/hf.py
        cache.batch_select_indices(owner)  # [U, ...] -> [N, ...], differentiable indexing
        rest = decoder_states(
            model,
            input_ids=batch.completion_ids[:, : T - 1],
            attention_mask=batch.attention_mask[:, : P + T - 1],
            position_ids=batch.position_ids[:, P : P + T - 1],
            past_key_values=cache,
            use_cache=True,
        )
        hidden = torch.cat([hidden, rest.last_hidden_state], dim=1)  # [N, T, H]
    return chosen_logprobs(model, hidden, batch.completion_ids, batch.loss_mask, temperature, chunk)


# -- packed micro-batches -------------------------------------------------------------------
PACKED_ATTN = "dashrl_packed"  # attention implementation name registered with transformers


@dataclass
class Packed:
    """A micro-batch as ONE row with no padding: per group its prompt, then each completion but its last token.

    Positions restart for each piece (a completion continues at its prompt's length), and
    attention is block-diagonal per group: the prompt is causal over itself, a completion
    attends to its group's prompt and causally to itself (`pieces`). `rows[i]` lists, for
    sample i, the packed positions whose hidden state predicts each of its completion tokens.
    """

    input_ids: torch.Tensor  # [1, L]
    position_ids: torch.Tensor  # [1, L]
    pieces: list[
        tuple[int, int, int, int]
    ]  # (start, length, prefix start, prefix length); prefix length 0 for a prompt
    rows: torch.Tensor  # [M] packed position predicting each real completion token, row-major over [N, T]
    flat: torch.Tensor  # [M] index of that token in the flattened [N, T] completion matrix


def pack(batch: Collated) -> Packed:
    """The packed form of a collated micro-batch (same tokens, prompts once per group)."""
    P, T = batch.prompt_len, batch.completion_ids.shape[1]
    p_len = batch.attention_mask[:, :P].sum(1).tolist()
    c_len = batch.attention_mask[:, P:].sum(1).tolist()  # completion lengths (the loss mask may skip env tokens)
    ids, pos, pieces, rows, flat = [], [], [], [], []
    start: dict[int, tuple[int, int]] = {}  # prompt row -> (packed start, length)
    n = 0
    for r, owner in enumerate(batch.prompt_rows.tolist()):
        if owner not in start:
            p = p_len[owner]
            ids.append(batch.input_ids[owner, P - p : P])
            pos.append(torch.arange(p))
            pieces.append((n, p, 0, 0))
            start[owner] = (n, p)
            n += p
        ps, p = start[owner]
        c = c_len[r]
        if c == 0:
            continue
        rows.append(torch.tensor([ps + p - 1]))  # the prompt's last position predicts token 0
        flat.append(torch.arange(r * T, r * T + c))
        if c > 1:
            ids.append(batch.completion_ids[r, : c - 1])
            pos.append(torch.arange(p, p + c - 1))
            pieces.append((n, c - 1, ps, p))
            rows.append(torch.arange(n, n + c - 1))
            n += c - 1
    dev = batch.input_ids.device
    cat = lambda xs: torch.cat(xs).to(dev) if xs else torch.zeros(0, dtype=torch.long, device=dev)  # noqa: E731
    return Packed(cat(ids)[None], cat(pos)[None], pieces, cat(rows), cat(flat))


@dataclass
class Block:
    """One group's span of a packed row for attention: its prompt and the completions that follow it.

    `index` lists the block's packed positions, the prompt first (None when they are the contiguous
    range `start .. start + length`, the usual case: a view then, no gather); `mask` is
    `[length, length]`, True where a query may attend (None: plain causal, a prompt alone).
    """

    start: int
    length: int
    index: torch.Tensor | None
    mask: torch.Tensor | None
    _additive: dict[torch.dtype, torch.Tensor] = field(default_factory=dict, init=False, repr=False)

    def additive(self, dtype: torch.dtype) -> torch.Tensor:
        """`mask` as 0 / -inf in `dtype`, made once per pass: CPU's flash kernel takes an additive mask
        about 1.4x faster than a boolean one (the same attention)."""
        if dtype not in self._additive:
            assert self.mask is not None
            zero = torch.zeros(self.mask.shape, dtype=dtype, device=self.mask.device)
            self._additive[dtype] = zero.masked_fill_(~self.mask, float("-inf"))
        return self._additive[dtype]


def attention_blocks(pieces: list[tuple[int, int, int, int]], device: torch.device | str = "cpu") -> list[Block]:
    """`Packed.pieces` grouped by prompt into `Block`s, one attention call each instead of one per piece.

    Within a block a position attends causally to its own piece and to all of its prompt, which
    comes first: `j <= i and (piece[j] == piece[i] or piece[j] is the prompt)`, the same
    attention as one call per piece (`packed_attention`'s former loop).

    >>> b = attention_blocks([(0, 2, 0, 0), (2, 2, 0, 2), (4, 1, 0, 2)])
    >>> len(b), b[0].start, b[0].length, b[0].index
    (1, 0, 5, None)
    >>> b[0].mask.int().tolist()
    [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 1]]
    """
    owned: dict[int, list[tuple[int, int]]] = {}  # prompt start -> its pieces (start, length), the prompt first
    for s, n, ps, p in pieces:
        owned.setdefault(s if p == 0 else ps, []).append((s, n))
    blocks = []
    for spans in owned.values():
        length = sum(n for _, n in spans)
        piece = torch.cat([torch.full((n,), k, dtype=torch.long) for k, (_, n) in enumerate(spans)])
        contiguous = all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))
        index = None if contiguous else torch.cat([torch.arange(s, s + n) for s, n in spans]).to(device)
        mask = None
        if len(spans) > 1:
            same = (piece[None, :] == piece[:, None]) | (piece[None, :] == 0)
            mask = (same & torch.ones(length, length, dtype=torch.bool).tril_()).to(device)
        blocks.append(Block(spans[0][0], length, index, mask))
    return blocks


def packed_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: Any,
                     dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:  # fmt: skip
    """Attention over the `Block`s of a packed row (passed as `dashrl_blocks`): one SDPA call per
    group, no padding. `[1, heads, L, D]` in, `[1, L, heads, D]` out (transformers' attention-interface
    contract).
    """
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    blocks: list[Block] = kwargs["dashrl_blocks"]

    def one(b: Block) -> torch.Tensor:
        if b.index is None:
            q, k, v = (t[:, :, b.start : b.start + b.length] for t in (query, key, value))
        else:
            q, k, v = (t.index_select(2, b.index) for t in (query, key, value))
        if b.mask is None:
            return sdpa(q, k, v, is_causal=True, scale=scaling)
        return sdpa(q, k, v, attn_mask=b.additive(q.dtype), scale=scaling)

    if len(blocks) == 1 and blocks[0].index is None and blocks[0].length == query.shape[2]:
        return one(blocks[0]).transpose(1, 2), None  # the whole row is one group: no copy
    out = torch.empty_like(query)
    for b in blocks:
        if b.index is None:
            out[:, :, b.start : b.start + b.length] = one(b)
        else:
            out.index_copy_(2, b.index, one(b))
    return out.transpose(1, 2), None


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None  # packed_attention builds its own per-piece masks


@contextlib.contextmanager
def _attention(model: Any, name: str) -> Iterator[None]:
    """Run `model` with attention implementation `name`, restoring the previous one afterwards."""
    before = model.config._attn_implementation
    if before == name:
        yield
        return
    model.set_attn_implementation(name)
    if model.config._attn_implementation != name:  # refused with a warning: never run the wrong attention
        raise RuntimeError(f"{type(model).__name__} did not switch to the {name!r} attention; use --train.packed false")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def packable(model: Any) -> bool:
    """Whether `packed_attention` computes `model`'s attention exactly: a model that routes its
    attention through transformers' attention interface and lets it be switched at run time (for
    a class whose source transformers cannot read, it refuses the switch with only a warning),
    without sliding windows or logit soft-capping (which `packed_attention` does not apply).

    >>> packable(object())
    False
    """
    cfg, cls = getattr(model, "config", None), type(model)
    if cfg is None or not getattr(cls, "_supports_attention_backend", False):
        return False
    if not getattr(cls, "_can_set_attn_implementation", lambda: False)():
        return False
    sliding = getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True)
    return (
        not sliding
        and not getattr(cfg, "attn_logit_softcapping", None)
        and "sliding_attention" not in (getattr(cfg, "layer_types", None) or ())
    )


def packed_logprobs(model: Any, batch: Collated, temperature: float = 1.0, chunk: int = 0) -> torch.Tensor:
    """Same result as `shared_prompt_logprobs` (up to float rounding), from one packed row without padding."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(PACKED_ATTN, packed_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_ATTN, _no_mask)
    pk = pack(batch)
    with _attention(model, PACKED_ATTN):
        out = decoder_states(
            model,
            input_ids=pk.input_ids,
            position_ids=pk.position_ids,
            use_cache=False,
            dashrl_blocks=attention_blocks(pk.pieces, pk.input_ids.device),
        )
    hidden = out.last_hidden_state[0, pk.rows]  # [M, H]
    targets = batch.completion_ids.reshape(-1)[pk.flat]
    mask = torch.ones_like(targets)
    picked = chosen_logprobs(model, hidden[None], targets[None], mask[None], temperature, chunk)[0]
    N, T = batch.completion_ids.shape
    out = torch.zeros(N * T, dtype=torch.float32, device=hidden.device).index_put((pk.flat,), picked).view(N, T)
    return out * batch.loss_mask  # 0 on an environment's tokens, as the other passes give (x 1 elsewhere)
