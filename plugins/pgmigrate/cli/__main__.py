"""`python -m pgmigrate.cli`: the entry point of `scripts/migration`."""

from pgmigrate.cli.main import main

raise SystemExit(main())
