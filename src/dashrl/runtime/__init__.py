"""The process's runtime around torch: how OpenMP threads wait (`openmp`, chosen before torch
loads), the CPU kernels and thread count a run records and restores (`kernels`), atomic file
writes (`io`), what this machine measures at (`hardware`), and how the allocator keeps freed
memory (`memory`). Standard library only at import.
"""
