"""The `indexer` command line: build, search, worker, migrate, train, evaluate."""
