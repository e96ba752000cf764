"""The application layer: one function per use case, for the CLI and the web app.

Each module owns a command group (borgmatic's `actions/`): `setup` (init, db upgrade),
`runs` (activities, reclassify), `balance`, `status`, `accounts` (connect, disconnect),
`notifications` (notify test), `sync` (sync, demo), `report`, `classify`. They take an
`AppContext` (settings, environment, database, clock) and return typed values; callers render
them and turn errors into exit codes. Only this layer (and the worker below it) reads and
writes the store: the CLI and the web app never do.
"""
