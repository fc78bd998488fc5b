"""The `hf` sampler's own decode step for Llama-family models: shared-prefix attention, fused
projections, a preallocated KV cache and batch buckets.

Prefill still runs through the transformers model (once per distinct prompt); the decode steps
then run here, on weights packed once per `generate` call:

- QKV and gate/up are each one matrix product per layer (fused weights);
- the prompt's keys and values are kept ONCE per group (`[P, Hkv, L, D]`), not once per row.
  A decode step's attention is split in two: the G rows of a group (all their query heads at
  once) attend to the group's prompt in one kernel call, each row attends to its own
  completion in another, and the two partial results are merged by their log-sum-exp
  (`merge_attention`). The prompt's KV is read once per group and step instead of G times;
- each row's completion KV lives in buffers preallocated for the whole decode, written in place;
- on CPU in bf16 the matrix weights are reordered once per call into oneDNN's blocked layout
  (`prepack`), so that no product re-lays out its weight at every step;
- finished rows stay in the batch (masked out of the sampling) until the live rows fit the next
  smaller batch bucket (`BUCKETS`); only then is the batch compacted, so a decode pays a handful
  of cache copies instead of one per finishing row, and the step sees a few fixed shapes.

Numerics follow transformers' Llama (RMSNorm in fp32, rotary tables from the model's own
rotary module, the same residual dtype); attention runs in torch's fused CPU/GPU flash kernel,
so bf16 scores accumulate in fp32. The random stream is consumed exactly as in the plain loop
(one uniform per live row per step, live rows in prompt order), so a seed's draws do not depend
on the bucket a row sits in.

Anything this step does not cover (other architectures, attention or MLP biases, sliding
windows, non-SiLU activations) falls back to the plain transformers loop (`supports`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F  # noqa: N812

# Batch sizes the decode batch is compacted to: powers of two and 1.5x powers of two.
BUCKETS: tuple[int, ...] = tuple(sorted({1, 2, 3} | {m * 2**k for k in range(1, 12) for m in (2, 3)}))


def next_bucket(n_live: int, current: int, buckets: Sequence[int] = BUCKETS) -> int:
    """Batch size to compact to: the smallest bucket holding `n_live` rows, if below `current`.

    >>> next_bucket(40, 64), next_bucket(50, 64), next_bucket(3, 64)
    (48, 64, 3)
    """
    fit = min((b for b in buckets if b >= n_live), default=current)
    return fit if fit < current else current


def merge_attention(o1: torch.Tensor, lse1: torch.Tensor, o2: torch.Tensor, lse2: torch.Tensor) -> torch.Tensor:
    """Attention over the union of two disjoint key sets, from each set's own result.

    `o1, o2 [..., D]` are softmax-weighted values over each set, `lse1, lse2 [...]` the
    log-sum-exp of each set's scaled scores. Over the union, set 1 carries the share
    exp(lse1) / (exp(lse1) + exp(lse2)) = sigmoid(lse1 - lse2) of the softmax mass, so the
    result is o2 + sigmoid(lse1 - lse2) (o1 - o2): one `lerp`, in at least fp32, returned in the
    dtype of `o1`.

    >>> o = merge_attention(torch.ones(1, 1), torch.zeros(1), torch.zeros(1, 1), torch.zeros(1))
    >>> o.tolist()  # two sets of equal mass: the mean
    [[0.5]]
    """
    acc = torch.promote_types(o1.dtype, torch.float32)
    w = torch.sigmoid(lse1.to(acc) - lse2.to(acc)).unsqueeze(-1)  # [..., 1] set 1's share of the mass
    return torch.lerp(o2.to(acc), o1.to(acc), w).to(o1.dtype)


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention `q [N, H, Lq, D]` over `k, v [N, H, Lk, D]` and its log-sum-exp `[N, H, Lq]`.

    Not causal: every query sees every key (plus the additive `mask [N, 1, 1, Lk]`). torch's
    fused flash kernel, which accumulates in fp32 and returns the log-sum-exp.

    >>> o, lse = attention_with_lse(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 3, 2), torch.ones(1, 1, 3, 2))
    >>> o.tolist(), round(float(lse), 4)  # three equal scores: lse = log 3
    ([[[[1.0, 1.0]]]], 1.0986)
    """
    if q.device.type == "cpu":
        o, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask)
        return o, lse
    s = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5  # [N, H, Lq, Lk]
    if mask is not None:
        s = s + mask.float()
    lse = torch.logsumexp(s, -1)
    return (torch.softmax(s, -1) @ v.float()).to(q.dtype), lse


def supports(model: Any) -> bool:
    """Whether `model` is a Llama-style decoder this module decodes exactly (else: the plain loop)."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) != "llama":
        return False
    if (
        getattr(cfg, "attention_bias", False)
        or getattr(cfg, "mlp_bias", False)
        or getattr(cfg, "hidden_act", "silu") != "silu"
    ):
        return False
    if getattr(cfg, "sliding_window", None) or getattr(cfg, "pretraining_tp", 1) not in (None, 1):
        return False
    return hasattr(getattr(model, "model", None), "rotary_emb")


def can_prepack(w: torch.Tensor) -> bool:
    """Whether oneDNN can hold `w` pre-reordered: a bf16 CPU matrix on a CPU with bf16 support."""
    return (
        w.device.type == "cpu"
        and w.dtype == torch.bfloat16
        and w.dim() == 2
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


def prepack(w: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """`w [out, in]` reordered once into oneDNN's layout for products with `batch` rows (else `w`)."""
    return torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), batch) if can_prepack(w) else w


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`x @ w.T`: oneDNN's product when `w` was prepacked, else `F.linear` (the same kernel
    without the per-call reorder of the weight: equal results in the shapes tested)."""
    if w.is_mkldnn:
        return torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    return F.linear(x, w)


@dataclass
class PackedLayer:
    """One decoder layer's weights, QKV and gate/up fused."""

    ln_in: torch.Tensor  # [d]
    wqkv: torch.Tensor  # [(H + 2 Hkv) D, d]
    wo: torch.Tensor  # [d, H D]
    ln_post: torch.Tensor  # [d]
    wgu: torch.Tensor  # [2 I, d]
    wdown: torch.Tensor  # [d, I]


@dataclass
class Packed:
    """A Llama model's weights as the decode step reads them."""

    embed: torch.Tensor  # [V, d]
    head: torch.Tensor  # [V, d]
    norm: torch.Tensor  # [d]
    layers: list[PackedLayer]
    rotary: Any  # the model's rotary module: (x, position_ids) -> cos, sin
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    pre_attention: Any = None  # pre_attention, or its torch.compile'd version
    post_attention: Any = None


@torch.no_grad()
def pack(model: Any, compiled: tuple[Any, Any] | None = None, prepacked: bool = True) -> Packed:
    """Fuse a Llama model's projections (a copy of the layer weights, same dtype).

    `compiled`: (pre, post) replacements for `pre_attention` and `post_attention`, e.g. from `compile_steps`.
    `prepacked`: bf16 CPU weights are reordered for oneDNN (`prepack`; never with `compiled`).
    """
    cfg, m = model.config, model.model
    mm = prepack if prepacked and compiled is None else (lambda w: w)
    layers = []
    for layer in m.layers:
        a, mlp = layer.self_attn, layer.mlp
        layers.append(
            PackedLayer(
                ln_in=layer.input_layernorm.weight,
                wqkv=mm(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])),
                wo=mm(a.o_proj.weight),
                ln_post=layer.post_attention_layernorm.weight,
                wgu=mm(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
                wdown=mm(mlp.down_proj.weight),
            )
        )
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return Packed(
        embed=m.embed_tokens.weight,
        head=mm(model.lm_head.weight),
        norm=m.norm.weight,
        layers=layers,
        rotary=m.rotary_emb,
        heads=cfg.num_attention_heads,
        kv_heads=cfg.num_key_value_heads,
        head_dim=head_dim,
        eps=cfg.rms_norm_eps,
        pre_attention=compiled[0] if compiled else pre_attention,
        post_attention=compiled[1] if compiled else post_attention,
    )


def compile_steps() -> tuple[Any, Any]:
    """`pre_attention` and `post_attention` compiled by torch.compile (inductor), shape-polymorphic in B
    so that compacting to another bucket does not recompile. Attention and the cache stay eager."""
    return torch.compile(pre_attention, dynamic=True), torch.compile(post_attention, dynamic=True)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """transformers' LlamaRMSNorm: normalise in fp32, scale in the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of `x [B, H, D]` with per-row `cos, sin [B, 1, D]` (transformers' convention)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def pre_attention(x: torch.Tensor, ln: torch.Tensor, wqkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  heads: int, kv_heads: int,
                  eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Norm, fused QKV product and rotary embedding of `x [B, d]`: `q [B, H, D]`, `k, v [B, Hkv, D]`."""
    B = x.shape[0]  # noqa: N806
    qkv = linear(rms_norm(x, ln, eps), wqkv).view(B, heads + 2 * kv_heads, -1)  # [B, H + 2 Hkv, D]
    qk = rotate(qkv[:, : heads + kv_heads], cos, sin)  # queries and keys in one rotation
    return qk[:, :heads], qk[:, heads:], qkv[:, heads + kv_heads :]


def post_attention(x: torch.Tensor, o_p: torch.Tensor, lse_p: torch.Tensor, o_s: torch.Tensor, lse_s: torch.Tensor,
                   wo: torch.Tensor, ln: torch.Tensor, wgu: torch.Tensor, wdown: torch.Tensor,
                   eps: float) -> torch.Tensor:  # fmt: skip
    """Merge the prefix and suffix attention `[B, Hkv, r, D]`, output projection, residual, MLP, residual."""
    o = merge_attention(o_p, lse_p, o_s, lse_s)  # [B, Hkv, r, D]
    x = x + linear(o.reshape(x.shape[0], -1), wo)
    g, u = linear(rms_norm(x, ln, eps), wgu).chunk(2, dim=-1)  # [B, I] each
    return x + linear(F.silu(g) * u, wdown)


class DecodeState:
    """KV of one decode: each group's prompt once, each row's completion in preallocated buffers.

    Rows are kept in prompt order. `group[b]` is row b's prompt (index into the prefix),
    `slot[b]` its rank among the batch rows of that prompt; the prefix attention lays queries
    out as `[P, S slots, Hkv, r, D]`, so one kernel call per layer reads each prompt once.
    """

    def __init__(self, packed: Packed, prefix_kv: list[tuple[torch.Tensor, torch.Tensor]], prefix_mask: torch.Tensor,
                 prompt_len: torch.Tensor, group: torch.Tensor, capacity: int, share_prefix: bool = True):  # fmt: skip
        self.p = packed
        self.share = share_prefix
        B, Hkv, D = len(group), packed.kv_heads, packed.head_dim  # noqa: N806
        k0 = prefix_kv[0][0]
        if not share_prefix:  # the lever off: every row gets its own copy of its prompt's KV
            prefix_kv = [(k[group], v[group]) for k, v in prefix_kv]
            prefix_mask, prompt_len, group = prefix_mask[group], prompt_len[group], torch.arange(B, device=group.device)
        self.prefix_kv, self.prefix_mask, self.prompt_len = (
            prefix_kv,
            prefix_mask,
            prompt_len,
        )  # [P, Hkv, L, D], [P, 1, 1, L], [P]
        self.suffix_kv = [(k0.new_empty((B, Hkv, capacity, D)), k0.new_empty((B, Hkv, capacity, D))) for _ in prefix_kv]
        self.rows = torch.arange(B, device=group.device)  # [B] the chunk row each batch row decodes
        self._set_groups(group)

    def _set_groups(self, group: torch.Tensor) -> None:
        self.group = group  # [B]
        counts: dict[int, int] = {}
        slot = []
        for g in group.tolist():
            slot.append(counts.get(g, 0))
            counts[g] = slot[-1] + 1
        self.slots = max(counts.values())
        self.flat = group * self.slots + torch.tensor(slot, device=group.device)  # [B] row -> prefix query slot
        n = len(group)
        self.dense = n == (int(group.max()) + 1) * self.slots and bool(
            torch.equal(self.flat, torch.arange(n, device=group.device))
        )

    def compact(self, keep: torch.Tensor, filled: int) -> None:
        """Keep batch rows `keep` (sorted), copying the `filled` completion positions; drop unused prompts."""
        used, group = torch.unique(self.group[keep], return_inverse=True)  # sorted prompt ids still in use
        if len(used) < len(self.prefix_kv[0][0]):
            self.prefix_kv = [(k[used], v[used]) for k, v in self.prefix_kv]
            self.prefix_mask, self.prompt_len = self.prefix_mask[used], self.prompt_len[used]
        out = []
        for k, v in self.suffix_kv:
            k2, v2 = k.new_empty((len(keep), *k.shape[1:])), v.new_empty((len(keep), *v.shape[1:]))
            k2[:, :, :filled], v2[:, :, :filled] = k[keep, :, :filled], v[keep, :, :filled]
            out.append((k2, v2))
        self.suffix_kv, self.rows = out, self.rows[keep]
        self._set_groups(group)

    def step(self, tokens: torch.Tensor, t: int) -> torch.Tensor:
        """Feed `tokens [B]` as completion position `t` of every row; return the final hidden `[B, d]`."""
        p = self.p
        B, H, Hkv, D = len(tokens), p.heads, p.kv_heads, p.head_dim  # noqa: N806
        r, P, S = H // Hkv, len(self.prompt_len), self.slots  # noqa: N806
        x = p.embed[tokens]  # [B, d]
        pos = (self.prompt_len[self.group] + t)[None]  # [1, B] positions skip the prompt's padding
        cos, sin = p.rotary(x, pos)  # [1, B, D]
        cos, sin = cos[0, :, None], sin[0, :, None]  # [B, 1, D]
        for layer, (pk, pv), (sk, sv) in zip(p.layers, self.prefix_kv, self.suffix_kv):
            q, k, v = p.pre_attention(x, layer.ln_in, layer.wqkv, cos, sin, H, Hkv, p.eps)  # [B, H, D], [B, Hkv, D] x2
            sk[:, :, t], sv[:, :, t] = k, v
            qg = q.view(B, Hkv, r, D)  # a row's r query heads per kv head
            o_s, lse_s = attention_with_lse(qg, sk[:, :, : t + 1], sv[:, :, : t + 1])  # [B, Hkv, r, D], [B, Hkv, r]
            qp = qg if self.dense else qg.new_zeros((P * S, Hkv, r, D)).index_copy_(0, self.flat, qg)
            qp = qp.view(P, S, Hkv, r, D).transpose(1, 2).reshape(P, Hkv, S * r, D)  # [P, Hkv, S r, D]
            o_p, lse_p = attention_with_lse(qp, pk, pv, self.prefix_mask)  # [P, Hkv, S r, D], [P, Hkv, S r]
            o_p = o_p.view(P, Hkv, S, r, D).transpose(1, 2).reshape(P * S, Hkv, r, D)
            lse_p = lse_p.view(P, Hkv, S, r).transpose(1, 2).reshape(P * S, Hkv, r)
            if not self.dense:
                o_p, lse_p = o_p[self.flat], lse_p[self.flat]
            x = p.post_attention(x, o_p, lse_p, o_s, lse_s, layer.wo, layer.ln_post, layer.wgu, layer.wdown, p.eps)
        return x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM-head logits `[n, V]` of final hidden states `[n, d]`."""
        return linear(rms_norm(hidden, self.p.norm, self.p.eps), self.p.head)
