"""The FLOPs a training pass runs, counted from the model's shape and the sequences' lengths: what
`dashrl bench` reads backprop MFU against (docs/performance.md, "How MFU counts").

The count is the packed pass's (`dashrl.train.logprobs.packed_logprobs`, the default): each group's
prompt runs once, and each completion runs all but its last token (that token predicts nothing),
attending to its group's prompt and causally to itself. Per multiply-add, 2 FLOPs forward and 4
backward (the gradient with respect to the input and with respect to the weight, each a product
the size of the forward's), so a forward and backward is 3 x the forward's:

- the body, every matmul weight of the decoder layers (attention's q, k, v, o and the gated MLP's
  gate, up, down; no embedding, no LM head): 2 x body parameters per position run;
- the LM head (hidden x vocab): 2 x hidden x vocab at completion positions only (one per
  completion token), since only they predict a token that is trained;
- attention's score (Q K^T) and value (P V) products: 2 x 2 x heads x head dim per layer for each
  (query, key) pair that the causal mask admits, so a prompt of length p alone costs p (p + 1) / 2
  pairs (a little over half the square) and a completion piece of n tokens after its prompt of p
  costs n p + n (n + 1) / 2. A kernel that computes the masked-out half as well does not count it.

Not counted: norms, rotary embeddings, softmax, activations, the loss (a few percent at most), the
recomputation of scores in a fused attention backward, and padding (the padded passes run more
FLOPs than this count: the count is the work the batch needs, so padding shows as lost utilisation).
A KL term adds the reference model's forward: `pass_flops(..., backward=False)`. Imports only the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Shape:
    """What a pass's FLOPs depend on: layers, the body's matmul parameters (all layers), attention's
    width (query heads x head dim) and the LM head's parameters (hidden x vocab)."""

    layers: int
    body: int
    width: int
    head: int


def shape_of(config: Any) -> Shape | None:
    """The `Shape` of a Llama-style decoder (Llama, SmolLM2, Qwen2/3, Mistral: grouped-query attention
    and a gated MLP) from its transformers config; None for a config without those fields.

    >>> from types import SimpleNamespace as NS
    >>> shape_of(NS(num_hidden_layers=2, hidden_size=8, intermediate_size=16, num_attention_heads=2,
    ...             num_key_value_heads=2, vocab_size=11))
    Shape(layers=2, body=1280, width=8, head=88)
    >>> shape_of(NS(n_layer=2)) is None
    True
    """
    try:
        layers, hidden, inter = config.num_hidden_layers, config.hidden_size, config.intermediate_size
        heads, vocab = config.num_attention_heads, config.vocab_size
    except AttributeError:
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2  # q and o; k and v
    return Shape(layers, layers * (attn + 3 * hidden * inter), heads * head_dim, hidden * vocab)


def pass_flops(shape: Shape, groups: Sequence[tuple[int, Sequence[int]]], backward: bool = True) -> int:
    """FLOPs of one packed pass over `groups`, each (prompt length, its completions' lengths): forward
    and backward (`backward=False`: the forward alone, as a reference model's). Module docstring.

    One prompt of 3 tokens and one completion of 2 on `shape_of`'s example: 4 positions run (3 + 2 - 1),
    2 through the head, 6 + 4 attended pairs; forward 2 x 1280 x 4 + 2 x 88 x 2 + 2 x 2 x 8 x 2 x 10,
    times 3:

    >>> pass_flops(Shape(layers=2, body=1280, width=8, head=88), [(3, [2])])
    33696
    """
    positions = heads = pairs = 0
    for p, completions in groups:
        positions += p
        pairs += p * (p + 1) // 2
        for c in completions:
            n = max(c - 1, 0)  # the completion's last token is not run
            positions += n
            heads += c
            pairs += n * p + n * (n + 1) // 2
    forward = 2 * shape.body * positions + 2 * shape.head * heads + 2 * 2 * shape.width * shape.layers * pairs
    return forward * (3 if backward else 1)
