"""`python -m irismodel.report`: the `iris-sweep-report` command line."""

from .command import main

raise SystemExit(main())
