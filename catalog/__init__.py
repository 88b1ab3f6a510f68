"""The catalog: settings, database, index versions on disk, the job queue and gallery builds.

Shared by the service (app/) and the CLI (indexer/); imports only model/ below it."""
