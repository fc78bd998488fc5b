"""Weight-sync benchmark: how long the samplers take to get a trainer's new weights.

    python -m dashrl.bench.sync --size 135m --samplers 2
    python -m dashrl.bench.sync --size 0.5b --samplers 1

Models are built from a config with random weights (no download): `135m` has
SmolLM2-135M's shape, `0.5b` Qwen2.5-0.5B's (as a Llama). Two ways are timed, from the
trainer's publish call until every sampler has loaded the weights into its own model:

- `numpy` (what `dashrl.distributed` does): the trainer returns its state dict as numpy arrays,
  stored once in the node's object store; every sampler on the node maps the same
  memory (zero-copy read) and copies it once, into its parameters.
- `torch`: the state dict as torch tensors, as before; each sampler deserializes its
  own copy and then copies it into its parameters.

Prints one table (median of `--repeats`); no test reads it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

SIZES = {
    "135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
    ),
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
    ),
}


def build(size: str) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **SIZES[size])).float().eval()


class Holder:
    """A trainer (publishes) or a sampler (loads): a model of the given size, 1 thread."""

    def __init__(self, size: str):
        import torch

        torch.set_num_threads(1)
        self.model = build(size)

    def publish(self, how: str) -> Any:
        from dashrl.distributed.actors import weights_to_numpy

        sd = self.model.state_dict()
        return weights_to_numpy(sd) if how == "numpy" else {k: v.detach().clone() for k, v in sd.items()}

    def load(self, state: Any, how: str) -> float:
        from dashrl.distributed.actors import weights_from_numpy

        t0 = time.perf_counter()
        self.model.load_state_dict(weights_from_numpy(state) if how == "numpy" else state, strict=True)
        return time.perf_counter() - t0

    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def main(argv: list[str] | None = None) -> None:
    import ray

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="135m")
    ap.add_argument("--samplers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--transports",
        default="numpy,torch",
        help="comma-separated, from numpy,torch (numpy alone needs a third less memory)",
    )
    args = ap.parse_args(argv)
    ray.init(num_cpus=args.samplers + 1, include_dashboard=False, log_to_driver=False)
    cls = ray.remote(Holder).options(num_cpus=1)
    trainer = cls.remote(args.size)
    samplers = [cls.remote(args.size) for _ in range(args.samplers)]
    n = ray.get(trainer.params.remote())
    ray.get([s.params.remote() for s in samplers])
    rows = []
    for how in args.transports.split(","):
        walls, publishes = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ref = trainer.publish.remote(how)
            ray.wait([ref])
            t1 = time.perf_counter()
            ray.get([s.load.remote(ref, how) for s in samplers])
            walls.append(time.perf_counter() - t0)
            publishes.append(t1 - t0)
            del ref
        rows.append((how, statistics.median(publishes), statistics.median(walls)))
    ray.shutdown()
    print(
        f"weight sync, {args.size} ({n / 1e6:.0f}M params, fp32 {n * 4 / 2**30:.2f} GiB), "
        f"{args.samplers} sampler(s) on one node"
    )
    print(f"{'transport':<10} {'publish s':>10} {'sync s':>8} {'vs first':>9}")
    base = rows[0][2]
    for how, pub, wall in rows:
        print(f"{how:<10} {pub:>10.3f} {wall:>8.3f} {wall / base:>8.2f}x")


if __name__ == "__main__":
    main()
