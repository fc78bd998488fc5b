"""train.keep_memory: glibc keeps freed large blocks, so the same buffer size is not faulted in again."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

from dashrl.runtime.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_buffer_comes_back_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("not glibc")
    faults = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.ones(32 * 2**20)  # 128 MiB: an mmap of its own under glibc's defaults
        del t
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    assert faults[-1] < 1000, faults  # 32,768 pages if the block went back to the OS and came again
