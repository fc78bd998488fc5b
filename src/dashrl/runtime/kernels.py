"""What the CPU kernels' choice depends on, recorded with each checkpoint and restored on resume.

oneDNN (torch's bf16 matmuls on CPU) picks its kernels, and how it splits a product's
reduction between threads, from the instruction set the CPU offers and the intra-op thread
count. Measured here (torch 2.13, oneDNN 3.12):

- on a CPU with AMX tiles (Intel Xeon: `amx_bf16`), bf16 products and their gradients differ
  in the last bits between 1 and 2 threads (e.g. a [300, 576] x [576, 576] product);
- on the same CPU with oneDNN capped at AVX-512 BF16 (`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`,
  the setting `train.cpu_isa`), and on an AMD EPYC (AVX-512 BF16, no AMX), they are the
  same for 1 to 4 threads.

So a run repeats bit for bit on the same kind of CPU with the same thread count; a checkpoint
records both (`record`), and `--resume` restores the thread count (`restore`) and names in one
line whatever it could not restore. With `train.cpu_isa = "avx512_core_bf16"` a run repeats
across thread counts as well, at a cost in speed on AMX CPUs (docs/repeatability.md).

Imports only the standard library at module level: the CLI applies `train.cpu_isa` before
torch runs its first product.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from dashrl.runtime import openmp

# oneDNN's names for ONEDNN_MAX_CPU_ISA (x86), lowest first; the AVX10 names are newer aliases of
# the three before them (oneDNN 3.12 runs `avx10_1_512_amx` kernels on a Xeon with AMX).
CPU_ISAS = (
    "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni",
    "avx512_core_bf16", "avx512_core_fp16", "avx512_core_amx", "avx512_core_amx_fp16",
    "avx10_1_512", "avx10_1_512_amx", "avx10_1_512_amx_fp16", "avx10_2_512", "avx10_2_512_amx_2",
)  # fmt: skip
_RANK = {**{isa: i for i, isa in enumerate(CPU_ISAS[:11])}, "avx10_1_512": 8, "avx10_1_512_amx": 9,
         "avx10_1_512_amx_fp16": 10, "avx10_2_512": 11, "avx10_2_512_amx_2": 12}  # fmt: skip
# The environment settings that change which kernels run or how they split work.
KERNEL_ENV = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_CBWR",
    "ATEN_CPU_CAPABILITY",
)
# /proc/cpuinfo flags -> the highest oneDNN ISA they allow, best first.
_FLAG_ISA = (("amx_fp16", "avx512_core_amx_fp16"), ("amx_bf16", "avx512_core_amx"), ("avx512_fp16", "avx512_core_fp16"),
             ("avx512_bf16", "avx512_core_bf16"), ("avx512_vnni", "avx512_core_vnni"), ("avx512f", "avx512_core"),
             ("avx2", "avx2"), ("avx", "avx"), ("sse4_1", "sse41"))  # fmt: skip


def apply_cpu_isa(cap: str) -> None:
    """Cap oneDNN's instruction set (`ONEDNN_MAX_CPU_ISA`) at `cap` ("" leaves it as it is).

    oneDNN reads the cap once, at its first product, so call this before any torch work in the
    process (the CLI and `dashrl.train.loop.train` do; Ray's workers inherit the variable).

    >>> apply_cpu_isa("")  # no cap: the CPU's best kernels
    """
    if cap:
        os.environ["ONEDNN_MAX_CPU_ISA"] = cap.upper()


@functools.lru_cache(maxsize=1)  # the CPU does not change under a process; configs ask at every build
def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags, from /proc/cpuinfo ("", empty set where there is none)."""
    name, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:  # x86, Arm
                    flags = set(value.split())
                if name and flags:
                    break
    except OSError:  # pragma: no cover - not Linux
        pass
    return name, flags


BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 AVX-512 BF16, AMX; Arm's bf16 extension


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU is visible to this process: its device node, without importing torch."""
    return os.path.exists("/dev/nvidia0") and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1")


def native_bf16(flags: set[str] | None = None, gpu: bool | None = None) -> bool:
    """Whether this machine computes bf16 at full speed: a GPU is visible (`gpu`, default
    `gpu_visible()`) or the CPU has bf16 instructions (`flags`, default /proc/cpuinfo's). Without
    them (an AVX2-only CPU) bf16 products run in slow emulation.

    >>> native_bf16({"avx2", "avx512f", "avx512_bf16"}, gpu=False), native_bf16({"avx2", "fma"}, gpu=False)
    (True, False)
    """
    gpu = gpu_visible() if gpu is None else gpu
    return gpu or bool((_cpuinfo()[1] if flags is None else flags) & BF16_FLAGS)


def effective_isa(flags: set[str], cap: str) -> str:
    """The best oneDNN ISA the CPU's `flags` allow, no higher than `cap` ("" = no cap).

    >>> effective_isa({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "")
    'avx512_core_amx'
    >>> effective_isa({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16")
    'avx512_core_bf16'
    >>> effective_isa({"avx2", "avx512f", "avx512_bf16"}, "")
    'avx512_core_bf16'
    """
    best = next((isa for flag, isa in _FLAG_ISA if flag in flags), "")
    cap = cap.lower()
    if cap in _RANK and best in _RANK and _RANK[cap] < _RANK[best]:
        return cap
    return best


def record() -> dict[str, Any]:
    """What this process's kernels depend on: thread count, CPU, ISA in effect, versions, settings.

    `openmp`: how the OpenMP threads wait and how that was chosen (`dashrl.runtime.openmp`): it
    does not change the bits, only how the run shares the machine.

    >>> sorted(record())  # doctest: +NORMALIZE_WHITESPACE
    ['cpu', 'env', 'isa', 'openmp', 'threads', 'torch']
    """
    import torch

    env = {k: os.environ[k] for k in KERNEL_ENV if k in os.environ}
    return {
        "threads": torch.get_num_threads(),
        "cpu": _cpuinfo()[0],
        "isa": cpu_isa(),
        "torch": torch.__version__,
        "env": env,
        "openmp": openmp.recorded(),
    }


def cpu_isa() -> str:
    """The oneDNN ISA this process's bf16 products run with: the CPU's best, under any cap set."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", ""))
    return effective_isa(_cpuinfo()[1], cap)


def available_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def restore(recorded: dict[str, Any] | None) -> str | None:
    """Set torch's thread count to the `recorded` one (a checkpoint's `record()`), where this
    machine has the cores for it; return one line naming what differs from the record and so
    may change the resumed steps' bits (None when nothing does, or nothing was recorded).

    >>> restore(None) is None
    True
    """
    if not recorded:
        return None
    import torch

    want = int(recorded["threads"])
    threads = min(want, available_cores())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    now = record()
    keys = ("threads", "cpu", "isa", "torch") if thread_dependent(now["isa"]) else ("cpu", "isa", "torch")
    differ = [f"{k} {now[k]} (was {recorded[k]})" for k in keys if recorded.get(k) != now[k]]
    if not differ:
        return None
    why = f"only {threads} cores here; " if threads < want and "threads" in keys else ""
    return (
        f"{why}resuming with {', '.join(differ)}: the resumed steps will not repeat the uninterrupted run bit for bit"
    )


def thread_dependent(isa: str) -> bool:
    """Whether bf16 products on `isa` differ with the thread count (measured: AMX ones do).

    >>> thread_dependent("avx512_core_amx"), thread_dependent("avx512_core_bf16")
    (True, False)
    """
    return "amx" in isa
