"""What this machine can do, measured: the matmul peak and the memory bandwidth that MFU and the
decode roofline of `dashrl bench` are read against; and the bench commands' progress line."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    """One progress line of `dashrl bench` on stderr."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def matmul_peak(dtype_name: str, n: int = 1024, seconds: float = 0.5, repeats: int = 3) -> float:
    """Measured GFLOP/s of an n x n x n matrix product in `dtype_name`: the best of `repeats` windows."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up
    best = 0.0
    for _ in range(repeats):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Measured GB/s of a large tensor copy (bytes read + bytes written), the best of `repeats`."""
    import torch

    a = torch.ones(mib * 2**20, dtype=torch.uint8)
    b = torch.empty_like(a)
    b.copy_(a)  # touch the pages
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        b.copy_(a)
        best = max(best, 2 * a.numel() / (time.perf_counter() - t0) / 1e9)
    return best
