"""hillsync: classify runs as uphill, downhill or flat and watch the hill balance."""

import sys

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """Import structlog while rich is hidden from it.

    structlog imports rich (and rich pygments), about 17 MB and 0.1 s, for pretty
    tracebacks that hillsync never uses: tracebacks are rendered as plain text before the
    secrets are masked (logs.py). Hidden only during that import: `sync`'s progress display
    on a terminal still imports rich itself.
    """
    if "structlog" in sys.modules:
        return
    hidden = [name for name in ("rich", "better_exceptions") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import structlog  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]


_import_structlog_without_rich()
