"""train.keep_memory: glibc keeps freed large blocks, so the same buffer size is not faulted in again.

Checked in fresh interpreters, with glibc's own malloc and free of a 128 MiB block (what a packed
pass's [vocab, hidden] buffers are under torch's CPU allocator), once with `keep_freed_memory()` and
once without: without it every block is an mmap of its own, returned at free and faulted in again.
(torch's aligned allocations of the same size may land at shifting offsets of the heap, so counting
faults through torch itself measures where the heap grew, not whether freed memory was kept.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECK = """
import ctypes, json, resource, sys
from dashrl.runtime.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(128 << 20)
    libc.memset(block, 1, 128 << 20)  # touch every page
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"kept": kept, "faults": faults}))
"""


def faults(mode: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHECK, mode], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_buffer_comes_back_without_page_faults():
    kept = faults("keep")
    if not kept["kept"]:
        pytest.skip("not glibc")
    default = faults("default")["faults"]
    assert min(default) > 30000, default  # glibc's default: each block mapped anew, 32,768 pages each time
    assert kept["faults"][0] > 30000 and max(kept["faults"][1:]) < 1000, kept  # kept: faulted in once
