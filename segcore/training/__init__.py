"""Training: the loop, its run directory writer, the config, the schedule and validation."""
