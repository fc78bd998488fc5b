"""Benchmarks: each a command that prints a table, comparing variants side by side in one run.

`dashrl bench` and `dashrl tune` (`dashrl.cli.bench`, `dashrl.cli.tune`) parse the flags and call
in here: `steps` (grpo against DASH, the default), `sampling` (the sampler backends), `backprop`
(the trainer's levers), `algos` (sample selection), `runs` (whole runs: the quickstart's split and
time to reward), `tune` (the batch-size sweeps); `sync`, `overlap` and `shardmem` measure the Ray
backend, `shared` a machine shared with other jobs (each `python -m dashrl.bench.NAME`).
`workloads` holds the shared settings and `interleave` the step-by-step rotation that the
variant benches share. Nothing here imports the command line, and the training code imports
nothing from here.
"""
