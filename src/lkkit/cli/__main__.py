"""`python -m lkkit.cli`: run lkkit's command line."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
