"""The sharded Policy (FSDP2 over gloo) in two processes, without Ray: what the trainer actors rely on.

Each check compares with the same tiny fp32 model unsharded, in the same process. Bit for bit
where no sum changes order (gathered weights, shards kept, the decoder's output); the
gradient and its norm within float rounding (rtol 1e-5): the two ranks' parts are summed in
another order than one backward over the whole batch. An averaged gradient would be half.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _rank(rank: int, port: int, out: str) -> None:
    sys.path.insert(0, str(HERE.parent))
    import torch.distributed as dist
    from conftest import make_tiny_model

    from dashrl.policy import Policy, decoder_states

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    plain, model = make_tiny_model(99), make_tiny_model(99)
    policy = Policy(model, shard=True)
    ids = torch.randint(3, 99, (4, 9), generator=torch.Generator().manual_seed(0))  # [N, T], the same on both ranks
    results = {}
    hidden = decoder_states(model, input_ids=ids, use_cache=False).last_hidden_state
    results["hidden"] = torch.equal(hidden, plain.base_model(input_ids=ids, use_cache=False).last_hidden_state)

    def loss(m, h, rows):  # this rank's half of the batch through the (tied) head
        return (h[rows] @ m.get_output_embeddings().weight.t()).logsumexp(-1).sum()

    mine = slice(2 * rank, 2 * rank + 2)
    loss(model, hidden, mine).backward()
    loss(plain, plain.base_model(input_ids=ids).last_hidden_state, slice(0, 4)).backward()
    norm = policy.clip_grad_norm(policy.parameters(), float("inf"))
    want = float(torch.nn.utils.clip_grad_norm_(list(plain.parameters()), float("inf")))
    results["norm"] = abs(norm - want) <= 1e-5 * want
    grads = policy.gather({n: p.grad for n, p in model.named_parameters()})
    results["grads"] = all(torch.allclose(grads[n], p.grad, rtol=1e-5, atol=1e-7) for n, p in plain.named_parameters())

    opt = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    opt.step()
    whole = policy.state_dict()
    results["gathered"] = (
        whole.keys() == model.state_dict().keys() and whole["lm_head.weight"] is whole["model.embed_tokens.weight"]
    )
    state = policy.gather(opt.state_dict())
    results["moments_whole"] = all(
        s["exp_avg"].shape == p.shape for s, p in zip(state["state"].values(), plain.parameters())
    )
    again = Policy(make_tiny_model(99, seed=1), shard=True)  # other weights, then the published state loaded
    again.load_state_dict(whole)
    opt2 = torch.optim.AdamW(again.parameters(), lr=1e-2)
    opt2.load_state_dict(state)
    again.shard_optimizer_state(opt2)
    results["weights_back"] = all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), whole.values()))
    back = again.gather(opt2.state_dict())
    results["moments_back"] = all(
        torch.equal(back["state"][i][k], state["state"][i][k]) for i in state["state"] for k in state["state"][i]
    )
    results["none_kept"] = all(v is None for v in again.state_dict(keep=False).values())
    results["lockstep"] = policy.lockstep(3 if rank == 0 else 1) == (0 if rank == 0 else 2)
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


def test_sharded_policy_gathers_keeps_shards_and_sums_gradients(tmp_path):
    import torch.multiprocessing as mp

    from dashrl.distributed.actors import free_port

    out = tmp_path / "results.pt"
    mp.spawn(_rank, args=(free_port(), str(out)), nprocs=2)
    results = torch.load(out)
    assert results == {k: True for k in results} and len(results) == 9, results
