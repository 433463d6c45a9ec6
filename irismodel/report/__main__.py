"""`python -m irismodel.report`: the `iris-sweep-report` command line."""

from .build import main

raise SystemExit(main())
