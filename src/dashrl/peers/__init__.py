"""Other RL trainers run on dashrl's workload, for `dashrl bench` (optional extras)."""
