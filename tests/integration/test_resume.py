"""Exact resume: SIGKILL a training process at many points, resume, get the same weights.

Each scenario runs this file as a script (`python test_resume.py PLAN.json`): it imports
torch and transformers once, then forks one child process per stage of the plan, so each
stage is a real process that dies by SIGKILL with whatever it held in memory, while the
import cost is paid once. A stage names where its child kills itself:

- `sample:C`   inside the sampler's generate call of sampling cycle C (after its first chunk)
- `backprop:C` inside `loss.backward()` of the first micro-batch of cycle C (when the
               gradient reaches the logprobs)
- `save:C`     inside the checkpoint save after cycle C (weights written, folder not renamed)
- `latest:C`   after that save's rename, before `checkpoints/latest` is updated
- `step:C`     right after the first optimizer step of cycle C (mid-cycle for ppo_mini/ppo_multi)
- `metrics:C`  halfway through writing cycle C's metrics line (a torn line)
- `sigterm:C`  (not a kill) SIGTERM during cycle C's sampling: the run must finish C, save, exit 143

On the Ray path (`spec["dist"]`, `test_dist_resume.py`) the driver is killed: `sample`
with the first unit in flight on a sampler actor, `backprop` with the trainer actors'
backprop running; `save`, `latest`, `metrics` and `sigterm` as above.

The kills are done here, by wrapping library functions in the child, so the library has
no test-only hooks. Cycles are 0-based sampling cycles (= optimizer steps for dash).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# -- the script side (runs in the helper process and its forked children) ------------------
def letter_task(flat: bool = False, pool: bool = False):
    """Endless, or with `pool` a finite pool of the 4 prompts (revisited every epoch: what a
    prompt selector skips from)."""
    from dashrl.data import Example
    from dashrl.data.tasks import Task

    def get(i):
        return Example(id=str(i % 4), problem=f"Say abc {i % 4}", answer="")

    # Share of lowercase letters: a random tiny model gets rewards that vary within a group.
    def reward(ex, text):
        if flat and ex.id in ("0", "1"):  # every answer alike: the group carries no gradient
            return 0.5
        return sum(c.islower() for c in text) / max(len(text), 1)

    return Task(name="letters", get=get, size=4 if pool else None, reward=reward)


def _install_kill(at: str, task, tokenizer) -> None:
    """Make this process kill itself (or send itself SIGTERM) at `at` = "phase:cycle"."""
    import dashrl.rollout.hf as hf
    import dashrl.train.checkpoint as ckpt
    import dashrl.train.learner as trainer_mod
    from dashrl.train.metrics import MetricsWriter

    phase, cycle = at.split(":")
    cycle = int(cycle)
    current = {"cycle": -1, "fired": False}

    def fire(where: str) -> None:
        if where == phase and current["cycle"] == cycle and not current["fired"]:
            current["fired"] = True
            os.kill(os.getpid(), signal.SIGTERM if phase == "sigterm" else signal.SIGKILL)

    real_batch = task.batch

    def batch(step, n):
        current["cycle"] = step
        return real_batch(step, n)

    task.batch = batch

    import dashrl.train.schedules as schedules

    def counted(fn):  # sft reads its own record stream and a selector `task.get`, not `task.batch`
        def step_fn(src, lrn, step, *a, **k):
            current["cycle"] = step
            return fn(src, lrn, step, *a, **k)

        return step_fn

    for name, fn in list(schedules.SCHEDULE_FNS.items()):
        schedules.SCHEDULE_FNS[name] = counted(fn)

    real_chunk = hf.HFSampler._generate_chunk

    def chunk(self, *a, **k):
        out = real_chunk(self, *a, **k)
        fire("sample")
        fire("sigterm")
        return out

    hf.HFSampler._generate_chunk = chunk

    try:  # the Ray path: the same phases, seen from the driver
        import dashrl.distributed.backend as backend
        import dashrl.distributed.source as ray_source
    except ImportError:  # no Ray installed
        backend = None
    if backend is not None:
        real_plan = ray_source.plan_units

        def plan_units(*a, **k):  # a generator: the kill fires with the first unit in flight on a sampler
            units = real_plan(*a, **k)
            for i, unit in enumerate(units):
                if i == 1:
                    fire("sample")
                    fire("sigterm")
                yield unit

        ray_source.plan_units = plan_units
        real_wait = backend.RayLearner._wait

        def wait(self, refs):  # the trainers' backprop tasks are running
            if phase == "backprop" and self._in_backprop:
                fire("backprop")
            return real_wait(self, refs)

        real_bp = backend.RayLearner._backprop

        def bp(self, *a, **k):
            self._in_backprop = True
            try:
                return real_bp(self, *a, **k)
            finally:
                self._in_backprop = False

        backend.RayLearner._in_backprop = False
        backend.RayLearner._wait = wait
        backend.RayLearner._backprop = bp

    real_make_loss = trainer_mod.make_loss

    def make_loss(name, **hp):
        loss_fn = real_make_loss(name, **hp)

        def hooked(inputs):  # the hook runs when backward reaches the logprobs
            if inputs.logprobs.requires_grad and phase == "backprop" and current["cycle"] == cycle:
                inputs.logprobs.register_hook(lambda g: fire("backprop"))
            return loss_fn(inputs)

        return hooked

    trainer_mod.make_loss = make_loss

    real_step = trainer_mod.Learner.optimizer_step

    def optimizer_step(self, *a, **k):
        out = real_step(self, *a, **k)
        fire("step")
        return out

    trainer_mod.Learner.optimizer_step = optimizer_step

    real_tok_save = tokenizer.save_pretrained

    def tok_save(*a, **k):
        fire("save")
        return real_tok_save(*a, **k)

    tokenizer.save_pretrained = tok_save

    real_atomic = ckpt.atomic_write_text

    def atomic(path, text):
        if Path(path).name == "latest":
            fire("latest")
        return real_atomic(path, text)

    ckpt.atomic_write_text = atomic

    real_write = MetricsWriter.write

    def write(self, row):
        if phase == "metrics" and current["cycle"] == cycle:
            line = json.dumps(row)
            self._f.write(line[: len(line) // 2])
            self._f.flush()
            os.fsync(self._f.fileno())
            fire("metrics")
        return real_write(self, row)

    MetricsWriter.write = write


def _stage(spec: dict, run_dir: Path, kill: str | None) -> None:
    """One child: build the tiny model fresh, train (resuming if there is a checkpoint)."""
    from conftest import make_tiny_model, make_tokenizer

    from dashrl.config import build_config
    from dashrl.train.loop import Interrupted, train

    tok = make_tokenizer()
    model = make_tiny_model(len(tok))
    task = letter_task(flat=spec.get("flat", False), pool=spec.get("pool", False))
    cfg = build_config(
        {
            "model": {"dtype": spec.get("dtype", "fp32")},
            "sampler": {"max_new_tokens": spec.get("max_new_tokens", 6), "batch_size": 8},
            "algo": {
                "schedule": spec.get("schedule", "dash"),
                "prompts_per_step": 4,
                "group_size": 4,
                "ppo_k": 2,
                **spec.get("algo", {}),
            },
            "train": {
                "steps": spec.get("steps", 6),
                "micro_batch_size": 4,
                "lr": 1e-3,
                "warmup_steps": 1,
                "lr_schedule": "cosine",
            },
            "run": {
                "out_dir": str(run_dir.parent),
                "name": run_dir.name,
                "quiet": True,
                "save_every": spec.get("save_every", 2),
                "keep_last": 2,
                "loggers": "",
            },
            "dist": spec.get("dist", {}),
            "select": spec.get("select", {}),
            "lora": spec.get("lora", {}),
            "sft": {"data": spec["sft_data"]} if "sft_data" in spec else {},
            "eval": spec.get("eval", {}),
            "env": {"factory": f"{Path(__file__).resolve().parents[1] / 'conftest.py'}:AskOnce"}
            if spec.get("env") == "path"
            else {},
        }
    )
    if spec.get("env"):  # multi-turn: letters end a turn as EOS does, so the environment gets to answer
        from conftest import AskOnce

        from dashrl.env.loading import EnvSpec

        if spec["env"] != "path":  # the object, on the one-process path (Ray's sampler actors load it by path)
            task.env = EnvSpec(AskOnce)
        model.generation_config.eos_token_id = [tok.eos_token_id, *tok.convert_tokens_to_ids(list("abcdefghij"))]
    if kill:
        _install_kill(kill, task, tok)
    try:
        train(cfg, model, tok, task=task)
    except Interrupted as e:
        print(f"[dashrl] {e}", file=sys.stderr)
        os._exit(128 + e.signum)


def main(plan_path: str) -> None:
    """Run the plan's stages one after another, each in a forked child; write their exit codes."""
    import torch

    torch.set_num_threads(1)  # before any op: forked children never inherit a live thread pool
    import transformers  # noqa: F401  (imported once, here, for every child)

    import safetensors.torch  # noqa: F401
    from conftest import make_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: F401

    import dashrl.rollout.hf  # noqa: F401
    import dashrl.train.loop  # noqa: F401
    import dashrl.train.schedules  # noqa: F401

    make_tokenizer()  # pure Python/Rust, no torch ops: finishes the lazy imports

    plan = json.loads(Path(plan_path).read_text())
    results = []
    for i, (run_dir, kill) in enumerate(plan["stages"]):
        log = Path(plan["logs"]) / f"stage{i}.log"
        pid = os.fork()
        if pid == 0:  # child
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                _stage(plan["spec"], Path(run_dir), kill)
            except BaseException:
                import traceback

                traceback.print_exc()
                os._exit(99)
            os._exit(0)
        t0 = time.perf_counter()
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        results.append({"kill": kill, "code": code, "log": log.read_text(), "seconds": time.perf_counter() - t0})
    Path(plan["out"]).write_text(json.dumps(results))


# -- the test side ------------------------------------------------------------------------
def run_plan(tmp_path: Path, spec: dict, stages: list[tuple[str, str | None]]) -> list[dict]:
    plan = {"spec": spec, "stages": stages, "logs": str(tmp_path), "out": str(tmp_path / "results.json")}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])}
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "plan.json")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp_path / "results.json").read_text())


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    from dashrl.train.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run_dir)
    return load_file(ckpt / "model.safetensors")


def assert_same_run(ref: Path, resumed: Path, steps: int) -> None:
    import torch

    from dashrl.train.metrics import read_metrics

    a, b = final_weights(ref), final_weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"weights differ: {k}"
    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, steps + 1))  # each step exactly once
    for r, s in zip(ref_rows, rows):  # the same samples, rewards and losses at every step
        for key in ("reward/mean", "adv/abs_mean", "loss", "grad_norm", "lr", "filter/kept_frac"):
            assert r.get(key) == s.get(key), (r["step"], key)
    assert sum(not r.get("skipped") for r in rows) >= steps // 2  # the weights really moved


def test_sigkill_anywhere_then_resume_is_bit_exact(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [
        (str(ref), None),
        (str(run), "sample:0"),  # no checkpoint and no logged step yet: the next stage starts over
        (str(run), "sigterm:2"),  # finishes cycle 2, saves step 3, exits 143
        (str(run), "backprop:3"),  # resumes from step 3
        (str(run), "save:3"),  # saves step 4 half-way: step 3 stays the newest whole one
        (str(run), "metrics:4"),  # torn metrics line of step 5
        (str(run), "latest:5"),  # final step-6 folder in place, `latest` not yet updated
        (str(run), None),  # finds step 6 done; nothing to run
    ]
    results = run_plan(tmp_path, {"schedule": "dash", "steps": 6, "save_every": 2}, stages)
    codes = [r["code"] for r in results]
    assert codes == [0, -9, 143, -9, -9, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert "resume with: dashrl train --resume" in results[2]["log"]
    assert not list((run / "checkpoints").glob(".tmp-*"))  # the torn save was cleaned up
    assert len(list((run / "checkpoints").glob("step-*"))) == 2  # keep_last
    assert_same_run(ref, run, 6)


def test_ppo_mini_bf16_resume_between_cycles_is_bit_exact(tmp_path):
    """K=2 optimizer steps per cycle, checkpoints only between cycles; the sampler's own
    bf16 weight copy is refreshed from the loaded checkpoint."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "step:2"), (str(run), None)]
    spec = {"schedule": "ppo_mini", "dtype": "bf16", "steps": 3, "save_every": 1}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 6)


def test_dapo_sigkill_then_resume_is_bit_exact(tmp_path):
    """dapo's refill rounds (half of every batch's problems teach nothing) draw their prompts
    and seeds from (seed, step, round) alone: killed mid-sampling and mid-backprop, the resumed
    run ends with the reference run's weights and rows."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sample:1"), (str(run), "backprop:2"), (str(run), None)]
    results = run_plan(
        tmp_path, {"algo": {"name": "dapo", "schedule": ""}, "flat": True, "steps": 4, "save_every": 1}, stages
    )
    assert [r["code"] for r in results] == [0, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 4)
    rows = read_metrics(run / "metrics.jsonl")
    assert all(r["train/groups"] == 4 and r["dynamic/rounds"] >= 2 for r in rows), rows


def test_env_sigkill_then_resume_is_bit_exact(tmp_path):
    """Multi-turn rollouts (a text environment: two model turns, the environment's tokens masked):
    killed inside a turn's generate call and mid-backprop, the resumed run ends with the reference
    run's weights and rows (each turn's seed is a pure function of the step's seed and the turn)."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sample:1"), (str(run), "backprop:2"), (str(run), None)]
    results = run_plan(tmp_path, {"env": True, "max_new_tokens": 16, "steps": 4, "save_every": 1}, stages)
    assert [r["code"] for r in results] == [0, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 4)
    rows = read_metrics(run / "metrics.jsonl")
    assert all(r["env/turns"] > 1.0 and r["gen/env_tokens"] > 0 for r in rows), rows
    assert [r["gen/env_tokens"] for r in rows] == [r["gen/env_tokens"] for r in read_metrics(ref / "metrics.jsonl")]


def test_greso_with_dapo_sigkill_then_resume_is_bit_exact(tmp_path):
    """GRESO's selector on dapo's refills, on a pool of 4 prompts of which two always get equal
    rewards: from the second epoch on it skips them with a probability that grows, and its state
    (history, cursor, p) is in the checkpoint, so the resumed run skips what the reference run
    skipped and ends with its weights and rows."""
    from dashrl.train.metrics import read_metrics

    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [(str(ref), None), (str(run), "sample:2"), (str(run), "backprop:4"), (str(run), None)]
    spec = {"algo": {"name": "dapo", "schedule": ""}, "select": {"name": "greso"}, "flat": True, "pool": True,
            "steps": 6, "save_every": 1}  # fmt: skip
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 6)
    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    keys = ("select/skipped", "select/candidates", "select/p_easy", "select/p_hard", "dynamic/prompts_sampled")
    assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in ref_rows]
    assert sum(r["select/skipped"] for r in rows) > 0  # it did skip, so the test means something


def test_sft_sigkill_anywhere_then_resume_is_bit_exact(tmp_path):
    """The sft schedule on the same loop, in the default bf16 (the sampler's own bf16 copy is
    refreshed only when an evaluation asks): killed mid-backprop, right after an optimizer
    step, mid-save and mid-metrics-line, it ends with the reference run's weights and rows."""
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"problem": f"Say abc {i}", "completion": "abc" * (i + 1)}) + "\n" for i in range(7))
    )
    ref, run = tmp_path / "ref", tmp_path / "run"
    stages = [
        (str(ref), None),
        (str(run), "backprop:1"),  # step 1 saved; dies in step 2's backward
        (str(run), "step:2"),  # resumes at 1, saves 2, dies right after step 3's optimizer step
        (str(run), "save:3"),  # resumes at 2, dies half-way through saving step 4
        (str(run), "metrics:4"),  # resumes at 2, saves 4, tears step 5's metrics line
        (str(run), None),
    ]
    evals = {"every": 2, "datasets": "arithmetic", "limit": 2, "max_new_tokens": 4, "batch_size": 4}
    spec = {"schedule": "sft", "sft_data": str(data), "dtype": "bf16", "steps": 6, "save_every": 1, "eval": evals}
    results = run_plan(tmp_path, spec, stages)
    assert [r["code"] for r in results] == [0, -9, -9, -9, -9, 0], [r["log"][-2000:] for r in results]
    assert_same_run(ref, run, 6)
    from dashrl.train.metrics import read_metrics

    ref_rows, rows = read_metrics(ref / "metrics.jsonl"), read_metrics(run / "metrics.jsonl")
    assert [r.get("eval/arithmetic/accuracy") for r in rows] == [r.get("eval/arithmetic/accuracy") for r in ref_rows]
    assert [r["sft/completion_tokens"] for r in rows] == [
        r["sft/completion_tokens"] for r in ref_rows
    ]  # the same records


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    main(sys.argv[1])
