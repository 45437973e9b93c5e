"""Training: the generic Trainer, metrics and self-describing checkpoints."""
