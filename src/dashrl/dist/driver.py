"""The driver of a distributed DASH run: Ray cluster, actors, and the step loop.

One step: the driver cuts the M x G batch into units (`dashrl.dist.units`) and hands
them round-robin to the H sampler actors, all at once (the paper's preemptive sampling
of the whole batch). Each unit comes back as one small report to the driver plus one
object per group of kept samples, which stays in the Ray object store. When the batch
is complete the driver packs whole groups into deliveries, fills the rollout store and
starts the H' trainers; each asks the store for deliveries until none are left, backprops
them with the full batch's normalisation, and all trainers all-reduce and step. Rank 0's
new weights go into the object store once; every sampler loads that one object.

Faults: a sampler that dies mid-batch is replaced by a fresh actor (loaded with the
current weights) and its units are sampled again, with the same seeds, on the next
sampler; the row records `dist/sampler_restarts`. A trainer that dies stops the run with
a message; the weights of the last finished step are saved first.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from dashrl.config import Config, to_toml
from dashrl.dist.actors import SamplerWorker, TrainerWorker
from dashrl.dist.store import Delivery, RolloutStore
from dashrl.dist.units import (
    TrainReport, UnitResult, add_totals, batch_norm, check_deliveries, finish_totals, pack_groups, plan_units, rollout_metrics,
)
from dashrl.train.checkpoint import atomic_write_text, save_checkpoint
from dashrl.train.metrics import MetricsWriter, Progress, summarize

MAX_UNIT_RETRIES = 3


@dataclass
class DistRun:
    """What a distributed run leaves for its caller (RunResult.trainer)."""

    model: Any
    tokenizer: Any
    deliveries: list[Delivery] = field(default_factory=list)
    sampler_restarts: int = 0


def _log(msg: str) -> None:
    print(f"[dashrl.dist] {msg}", file=sys.stderr, flush=True)


def connect(cfg: Config) -> bool:
    """Join `dist.address`, or start a local cluster sized for the actors; True if this call
    connected (then `ray.shutdown()` at the end stops a local cluster, or only disconnects)."""
    import ray

    d = cfg.dist
    if ray.is_initialized():  # the caller's cluster (tests): theirs to shut down
        return False
    if d.address:
        ray.init(address=d.address, log_to_driver=False)
        return True
    cpus = math.ceil(d.samplers * d.cpus_per_sampler + d.trainers * d.cpus_per_trainer)
    paths = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}} if paths else None
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env=env)
    return True


class Cluster:
    """Handles of the actors of one run, and how to replace a dead sampler."""

    def __init__(self, cfg: Config, model: Any, tokenizer: Any, task: Any, optimizer_steps: int):
        import ray

        d = cfg.dist
        self.cfg, self.tokenizer, self.task = cfg, tokenizer, task
        self.model_ref = ray.put(model)  # initial weights, for the first actors and any restart
        self.state_ref: Any = None  # newest weights, rank 0's object of the last step
        self._sampler_cls = ray.remote(SamplerWorker).options(num_cpus=d.cpus_per_sampler, num_gpus=d.gpus_per_sampler)
        self.samplers = [self._new_sampler(i) for i in range(d.samplers)]
        self.store = ray.remote(RolloutStore).options(num_cpus=0).remote()
        trainer_cls = ray.remote(TrainerWorker).options(num_cpus=d.cpus_per_trainer, num_gpus=d.gpus_per_trainer)
        self.trainers = [
            trainer_cls.remote(cfg, self.model_ref, tokenizer, task, optimizer_steps, r, d.trainers) for r in range(d.trainers)
        ]
        backend = d.backend if d.backend != "auto" else ("nccl" if d.gpus_per_trainer > 0 else "gloo")
        addr = ray.get(self.trainers[0].rendezvous.remote())
        ray.get([t.init_group.remote(addr, backend) for t in self.trainers])
        ray.get([s.ready.remote() for s in self.samplers])

    def _new_sampler(self, i: int) -> Any:
        actor = self._sampler_cls.remote(self.cfg, self.model_ref, self.tokenizer, self.task, i)
        if self.state_ref is not None:
            actor.load_weights.remote(self.state_ref)
        return actor

    def restart_sampler(self, i: int) -> None:
        import ray

        ray.kill(self.samplers[i], no_restart=True)
        self.samplers[i] = self._new_sampler(i)

    def close(self) -> None:
        import ray

        try:
            ray.get([t.close.remote() for t in self.trainers], timeout=30)
        except Exception:  # a dead trainer: nothing left to close
            pass
        for actor in [*self.samplers, *self.trainers, self.store]:
            ray.kill(actor, no_restart=True)


def sample_step(cl: Cluster, step: int) -> tuple[list[UnitResult], dict[int, Any], dict[str, float]]:
    """Sample the step's whole batch on the samplers; returns reports, group object refs, metrics."""
    import ray

    cfg = cl.cfg
    from dashrl.train.trainer import sample_seed

    seed = sample_seed(cfg.train.seed, step, 0)  # dash_step's seed (a pure function of cfg, step)
    M, G = cfg.algo.prompts_per_step, cfg.algo.group_size
    examples = cl.task.batch(step, M)
    H = len(cl.samplers)
    pending: dict[Any, tuple] = {}
    tries: dict[int, int] = {}

    def submit(unit: Any, i: int) -> None:
        actor = cl.samplers[i]
        refs = actor.sample.options(num_returns=1 + unit.num_groups).remote(
            unit, examples[unit.first_group : unit.first_group + unit.num_groups], seed
        )
        pending[refs[0]] = (unit, i, actor, refs[1:])

    for unit in plan_units(M, G, cfg.sampler.batch_size):
        submit(unit, unit.index % H)  # deterministic split; the samples do not depend on it
    reports: list[UnitResult] = []
    group_refs: dict[int, Any] = {}
    restarts = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        unit, i, actor, refs = pending.pop(ready[0])
        try:
            rep = ray.get(ready[0])
        except ray.exceptions.RayActorError as e:
            tries[unit.index] = tries.get(unit.index, 0) + 1
            if tries[unit.index] > MAX_UNIT_RETRIES:
                raise SystemExit(f"dashrl: unit {unit.index} of step {step} killed {MAX_UNIT_RETRIES + 1} sampler actors; last error: {e}") from None
            if cl.samplers[i] is actor:  # first failure seen from this actor: replace it
                restarts += 1
                _log(f"sampler {i} died during step {step}; restarting it and sampling its units again")
                cl.restart_sampler(i)
            submit(unit, (i + 1) % H)
            continue
        reports.append(rep)
        for b, ref in enumerate(refs):
            group_refs[unit.first_group + b] = ref
    reports.sort(key=lambda r: r.unit)
    metrics: dict[str, float] = {"dist/sampler_restarts": restarts}
    for i in range(H):
        mine = [r for r in reports if r.worker == i]
        busy = sum(r.sampling_s + r.scoring_s for r in mine)
        metrics[f"dist/sampler{i}/time_s"] = busy
        metrics[f"dist/sampler{i}/tokens_per_s"] = sum(sum(r.lengths) for r in mine) / busy if busy else 0.0
    return reports, group_refs, metrics


def train_step(cl: Cluster, step: int, reports: list[UnitResult], group_refs: dict[int, Any]) -> tuple[list[TrainReport], dict[int, int]]:
    """Fill the store with whole-group deliveries, run every trainer until it is empty."""
    import ray

    cfg = cl.cfg
    kept = {r.first_group + b: n for r in reports for b, n in enumerate(r.kept)}  # group -> kept samples
    packs = pack_groups(sorted(kept.items()), cfg.train.micro_batch_size)
    ray.get(cl.store.fill.remote(step, [(gs, sum(kept[g] for g in gs), [group_refs[g] for g in gs]) for gs in packs]))
    norm = batch_norm(reports, cfg.sampler.max_new_tokens)
    outs = [t.train_step.options(num_returns=2).remote(step, norm, cl.store) for t in cl.trainers]
    rank_of = {o[0]: r for r, o in enumerate(outs)}
    remaining, reps = list(rank_of), []
    while remaining:  # as they finish: a dead trainer is reported at once, not after the others time out
        ready, remaining = ray.wait(remaining, num_returns=1)
        try:
            reps.append(ray.get(ready[0]))
        except ray.exceptions.RayActorError as e:
            raise TrainerDied(rank_of[ready[0]], step, e) from None
        except ray.exceptions.RayTaskError:  # e.g. an all-reduce broken by a peer's death: name the dead one
            for ref in remaining:
                try:
                    ray.get(ref, timeout=30)
                except ray.exceptions.RayActorError as e:
                    raise TrainerDied(rank_of[ref], step, e) from None
                except Exception:
                    pass
            raise
    reps.sort(key=lambda rep: rep.rank)
    cl.state_ref = outs[0][1]
    return reps, kept


class TrainerDied(Exception):
    def __init__(self, rank: int, step: int, cause: BaseException):
        super().__init__(f"trainer actor {rank} died during step {step + 1}: {str(cause).splitlines()[0] if str(cause) else type(cause).__name__}")


def sync(cl: Cluster) -> float:
    """Every sampler loads rank 0's weights object; seconds until all have."""
    import ray

    t0 = time.perf_counter()
    for i, ref in enumerate([s.load_weights.remote(cl.state_ref) for s in cl.samplers]):
        try:
            ray.get(ref)
        except ray.exceptions.RayActorError:
            _log(f"sampler {i} died while loading weights; restarting it")
            cl.restart_sampler(i)  # the new actor loads cl.state_ref itself
    return time.perf_counter() - t0


def make_row(cfg: Config, ro: dict[str, float], reps: list[TrainReport], kept: int, total: int, t0: float, sync_s: float, lr: float) -> dict[str, Any]:
    """One metrics row, with the single-process keys (`dashrl.train.schedules`) plus `dist/*`."""
    row: dict[str, Any] = dict(ro)
    acc: dict[str, float] = {}
    for rep in reps:
        add_totals(acc, rep.totals, int(rep.totals.get("train/samples", 0)))
    n = acc.get("train/samples", 0.0)
    sums = finish_totals(acc, int(n))
    opt = reps[0].opt if reps else {"skipped": "all_filtered"}
    backprop_s = max((r.backprop_s for r in reps), default=0.0)
    row.update(
        {
            "filter/kept_frac": kept / total if total else 0.0,
            "loss": sums.get("loss", 0.0),
            "grad_norm": opt.get("grad_norm", 0.0),
            "lr": opt.get("lr", lr),
            "time/backprop_s": backprop_s,
            "time/optimizer_s": max((r.opt.get("time/optimizer_s", 0.0) for r in reps), default=0.0),
            "time/sync_s": sync_s,
            "time/step_s": time.perf_counter() - t0,
            "train/samples": int(n),
            "train/tokens": int(sums.get("train/tokens", 0)),
        }
    )
    for key in ("loss/policy", "kl", "clip_frac", "ratio/mean"):
        if key in sums:
            row[key] = sums[key]
    if cfg.algo.beta > 0:
        row.setdefault("kl", 0.0)
    row["tokens/sampled_per_s"] = row["gen/sampled_tokens"] / row["time/sampling_s"] if row["time/sampling_s"] else 0.0
    row["tokens/trained_per_s"] = row["train/tokens"] / backprop_s if backprop_s else 0.0
    for rep in reps:
        row[f"dist/trainer{rep.rank}/queue_wait_s"] = rep.queue_wait_s
        row[f"dist/trainer{rep.rank}/backprop_s"] = rep.backprop_s
        row[f"dist/trainer{rep.rank}/allreduce_s"] = rep.allreduce_s
    if "skipped" in opt:
        row["skipped"] = opt["skipped"]
    return row


def _save_latest(cl: Cluster, run_dir: Any, step: int, model: Any, tokenizer: Any, extra: dict | None = None) -> Any:
    import ray

    if cl.state_ref is not None:
        model.load_state_dict(ray.get(cl.state_ref))
    return save_checkpoint(run_dir, step, model, tokenizer, extra)


def train_dist(cfg: Config, model: Any = None, tokenizer: Any = None, task: Any = None) -> Any:
    """Train per `cfg` on Ray (`cfg.dist.samplers` > 0); same run folder as `dashrl.train.loop.train`.

    >>> train_dist(load_config(overrides=["--dist.samplers", "2", "--dist.trainers", "2"]))  # doctest: +SKIP
    """
    import ray

    from dashrl.train.loop import RunResult, make_run_dir, prepare_run, seed_everything
    from dashrl.train.trainer import lr_lambda

    run_dir = make_run_dir(cfg)
    atomic_write_text(run_dir / "config.toml", to_toml(cfg))
    seed_everything(cfg.train.seed)
    model, tokenizer, task = prepare_run(cfg, model, tokenizer, task)
    total = cfg.train.steps
    started = connect(cfg)
    writer = MetricsWriter(run_dir / "metrics.jsonl")
    progress = Progress(total, quiet=cfg.run.quiet)
    result = DistRun(model, tokenizer)
    rows: list[dict[str, Any]] = []
    cl = None
    step = 0
    try:
        if not cfg.run.quiet:
            _log(f"run folder {run_dir}; {cfg.dist.samplers} samplers, {cfg.dist.trainers} trainers")
        cl = Cluster(cfg, model, tokenizer, task, total)
        opt_steps = 0
        for step in range(total):
            t0 = time.perf_counter()
            reports, group_refs, dist_metrics = sample_step(cl, step)
            ro = rollout_metrics(reports)
            ro.update({"time/sampling_s": time.perf_counter() - t0, "time/scoring_s": 0.0})  # scoring runs on the samplers
            n_kept, n_all = sum(sum(r.kept) for r in reports), sum(len(r.lengths) for r in reports)
            reps: list[TrainReport] = []
            sync_s = 0.0
            if n_kept:
                reps, kept = train_step(cl, step, reports, group_refs)
                deliveries = [d for rep in reps for d in rep.deliveries]
                check_deliveries(step, deliveries, kept)
                result.deliveries.extend(deliveries)
                if "skipped" not in reps[0].opt:
                    opt_steps += 1
                    sync_s = sync(cl)
            lr = cfg.train.lr * lr_lambda(opt_steps, cfg.train.warmup_steps, total, cfg.train.lr_schedule)
            row = {"step": step + 1, **make_row(cfg, ro, reps, n_kept, n_all, t0, sync_s, lr), **dist_metrics}
            result.sampler_restarts += int(dist_metrics["dist/sampler_restarts"])
            writer.write(row)
            rows.append(row)
            progress.update(row)
            if cfg.run.save_every and (step + 1) % cfg.run.save_every == 0 and step + 1 < total:
                _save_latest(cl, run_dir, step + 1, model, tokenizer)
        if cl.state_ref is not None:  # the trained weights, before the cluster goes away
            model.load_state_dict(ray.get(cl.state_ref))
    except TrainerDied as e:
        progress.close()
        writer.close()
        path = _save_latest(cl, run_dir, step, model, tokenizer, {"trainer_died": True}) if cl else None
        raise SystemExit(f"dashrl: {e}; the run stops. Weights of the last finished step ({step}) are in {path}") from None
    except KeyboardInterrupt:
        progress.close()
        writer.close()
        if cl is not None:
            path = _save_latest(cl, run_dir, step, model, tokenizer, {"interrupted": True})
            _log(f"interrupted after step {step}; weights saved to {path}")
        raise
    finally:
        if cl is not None:
            cl.close()
        if started:
            ray.shutdown()
    progress.close()
    writer.close()
    path = save_checkpoint(run_dir, total, model, tokenizer)
    summary = summarize(rows)
    atomic_write_text(run_dir / "summary.md", summary + "\n")
    if not cfg.run.quiet:
        print(summary)
        _log(f"checkpoint: {path}; metrics: {run_dir / 'metrics.jsonl'}")
    return RunResult(run_dir, rows, result)
