"""Research code: datasets, the training loop, evaluation, metrics and plots (used by the indexer CLI)."""
