"""The training loop, logprob computation, micro-batching, checkpoints and metrics."""
