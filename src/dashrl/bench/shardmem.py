"""Memory of a trainer actor, replicated (`--dist.shard none`) against sharded (`full`).

    python -m dashrl.bench.shardmem                       # 135m: measured, 2 trainers
    python -m dashrl.bench.shardmem --size 0.5b --exact   # 0.5b: state bytes only, no memory used
    python -m dashrl.bench.shardmem --size 0.5b --arms full --trainers 4

Models are built from a config with random weights (no download): `135m` has the default
model's shape (SmolLM2-135M), `0.5b` Qwen2.5-0.5B's (as a Llama, tied head; see
`dashrl.bench.sync`). Each arm starts `--trainers` processes in one gloo group, as the
trainer actors do; each builds the model, wraps it as the trainer does (`dashrl.policy.Policy`,
sharded or not), runs one forward and backward of a small batch through the trainer's logprob
pass and takes one AdamW step (gradients all-reduced, or reduce-scattered by FSDP). Then
per rank:

- `params`, `grads`, `adam`: bytes of the tensors this rank holds, read from the tensors
  themselves (a shard's local part when sharded): exact, and the same on every machine;
- `peak RSS`: the process's peak resident memory (`ru_maxrss`) after the step, which also
  counts torch itself, the activations and the transient whole copies (the model as built
  before sharding, a layer gathered for its forward): rough, and machine-dependent;
  `+publish`: the same after gathering the weights for the samplers (rank 0 then holds a
  whole copy);
- `gather s`: seconds to gather the whole weights for the samplers (sharded), or to read
  them (replicated): what `publish` pays once per step; timing, so shared-machine noise.

`--exact` builds the models on the meta device: only the byte columns, for any size.
Prints one table; no test reads it.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

ARMS = ("none", "full")


def _bytes(tensors: Any) -> int:
    from torch.distributed.tensor import DTensor

    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def _worker(rank: int, world: int, port: int, size: str, arm: str, exact: bool, out: Any) -> None:
    import resource

    import torch
    import torch.distributed as dist

    from dashrl.distributed.actors import allreduce_grads
    from dashrl.bench.sync import SIZES
    from dashrl.policy import Policy, decoder_states

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device("meta" if exact else "cpu"):
        model = LlamaForCausalLM(LlamaConfig(tie_word_embeddings=True, **SIZES[size])).float()
    policy = Policy(model, shard=arm == "full")
    params = policy.parameters()
    row = {"rank": rank, "params": _bytes(params)}
    if exact:  # what one step leaves: a gradient and two fp32 moments like each parameter, one step count each
        row.update(grads=row["params"], adam=2 * row["params"] + 4 * len(params))
    else:
        opt = torch.optim.AdamW(params, lr=1e-5)
        ids = torch.randint(3, 1000, (4, 96), generator=torch.Generator().manual_seed(rank))  # [N, T]
        model.train()
        hidden = decoder_states(model, input_ids=ids, use_cache=False).last_hidden_state[:, -64:]  # [N, 64, H]
        head = model.get_output_embeddings().weight  # after the model's forward: whole, also when sharded
        (hidden @ head.t()).logsumexp(-1).mean().backward()  # [N, 64, V] logits: the head as the trainer's chunk=0 pass
        if arm == "none":
            allreduce_grads(policy, False, world)
        policy.clip_grad_norm(params, 1.0)
        opt.step()
        row["grads"] = _bytes(p.grad for p in params if p.grad is not None)
        row["adam"] = _bytes(t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor))
        row["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()
        policy.state_dict(keep=rank == 0)  # what publish does: sharded, the whole weights gathered onto rank 0
        row["gather_s"] = time.perf_counter() - t0
        row["rss_publish"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out.put(row)
    dist.barrier()
    dist.destroy_process_group()


def measure(size: str, arm: str, world: int, exact: bool) -> list[dict[str, Any]]:
    """One arm: `world` processes; their rows in rank order."""
    import torch.multiprocessing as mp

    from dashrl.distributed.actors import free_port

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, world, port, size, arm, exact, out)) for r in range(world)]
    for p in procs:
        p.start()
    rows = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"shardmem: a {arm} worker exited with {p.exitcode}")
    return sorted(rows, key=lambda r: r["rank"])


def main(argv: list[str] | None = None) -> None:
    from dashrl.bench.sync import SIZES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="135m")
    ap.add_argument("--trainers", type=int, default=2)
    ap.add_argument(
        "--arms", default="none,full", help="comma-separated, from none,full (0.5b replicated needs ~9 GiB per trainer)"
    )
    ap.add_argument(
        "--exact", action="store_true", help="state bytes only, models on the meta device (no memory, no timing)"
    )
    args = ap.parse_args(argv)
    if args.trainers < 2:
        ap.error("--trainers: expected >= 2 (sharding over one trainer shards nothing)")
    arms = args.arms.split(",")
    if not arms or set(arms) - set(ARMS):
        ap.error(f"--arms: expected a comma-separated list from {', '.join(ARMS)}, got {args.arms!r}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    gib = 2**30
    print(
        f"trainer memory, {args.size}, {args.trainers} trainers, fp32 weights and AdamW, "
        f"{os.cpu_count()} cores on this node"
    )
    head = f"{'shard':<6} {'rank':>4} {'params GiB':>11} {'grads GiB':>10} {'adam GiB':>9} {'state GiB':>10}"
    print(head + ("" if args.exact else f" {'peak RSS GiB':>13} {'+publish':>9} {'gather s':>9}"))
    for arm in arms:
        for r in measure(args.size, arm, args.trainers, args.exact):
            state = r["params"] + r["grads"] + r["adam"]
            line = (
                f"{arm:<6} {r['rank']:>4} {r['params'] / gib:>11.3f} {r['grads'] / gib:>10.3f} "
                f"{r['adam'] / gib:>9.3f} {state / gib:>10.3f}"
            )
            print(
                line
                + (
                    ""
                    if args.exact
                    else f" {r['rss'] / gib:>13.2f} {r['rss_publish'] / gib:>9.2f} {r['gather_s']:>9.3f}"
                )
            )


if __name__ == "__main__":
    main()
