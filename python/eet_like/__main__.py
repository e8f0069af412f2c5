"""`python -m eet_like`: the `eet-like` command line (eet_like.app.cli)."""
import sys

from .app.cli import main

sys.exit(main())
