"""`python -m hillsync` is the `hillsync` command."""

from hillsync.cli import main

raise SystemExit(main())
