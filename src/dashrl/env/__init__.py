"""Multi-turn environments and tools (TRL's `environment_factory` / `tools` convention).

- `tools`: a function or method with type hints and a docstring -> `Tool` (its JSON schema);
- `loading`: the user's class and functions by path or as objects, checked in one line;
- `calls`: `<tool_call>` parsing, a turn's calls run at once, every failure as text;
- `chat`: the first prompt with the tools described, and the tokens appended after a model turn;
- `rollout`: the multi-turn rollout over a sampler, all trajectories of a step advancing together;
- `registry`: the shipped environments' names (`--env.name`).

Importing this package imports nothing heavy; transformers loads when a tool is described.
"""
