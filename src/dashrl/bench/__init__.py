"""Benchmarks: each a command that prints a table, comparing variants side by side in one run.

`dashrl bench` (`dashrl.cli.bench`) and `dashrl tune` drive them: `steps` (grpo against DASH,
the default), `backprop`, `algos`, `runs` (the quickstart and time to reward), `sync`,
`overlap` and `shardmem` (the Ray backend), `tune`; `shared` holds what several of them use.
Nothing here is imported by the training code.
"""
