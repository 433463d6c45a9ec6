"""`python -m irismodel.report`: the `iris-sweep-report` command line."""

from .cli import main

raise SystemExit(main())
