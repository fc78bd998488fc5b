"""The process's runtime around torch: how OpenMP threads wait (`openmp`, chosen before torch
loads), the CPU kernels and thread count a run records and restores (`kernels`), atomic file
writes (`io`), and what this machine measures at (`hardware`). Standard library only at import.
"""
