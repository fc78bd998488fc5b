"""How the process's allocator keeps freed memory (standard library only): set once, before the
first large buffers, by the learner (`train.keep_memory`)."""

from __future__ import annotations

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Have glibc's allocator keep freed memory for reuse instead of giving large blocks back to
    the OS at once; returns whether it applied (glibc only; elsewhere nothing changes).

    By default every allocation over 32 MB is a fresh `mmap`, returned at `free`: each packed pass
    then faults in its [vocab, hidden] buffers (the LM head's bf16 cast, its fp32 gradient, the
    embedding's dense gradient) page by page again, about a million page faults per step on the
    quickstart (profile in docs/performance-short.md). With mmap off and trimming at its maximum
    the heap keeps those pages, and the process's memory stays at its peak instead of falling
    back between steps.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
