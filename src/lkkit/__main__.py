"""`python -m lkkit`: the development CLI (`python -m lkkit token create ...`)."""

from lkkit.cli import main

raise SystemExit(main())
