"""Feature extractors, one module per modality, registered by name."""
