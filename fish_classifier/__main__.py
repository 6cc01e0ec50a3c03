"""`python -m fish_classifier ...`: the same commands as the `fish-classifier` script."""

from fish_classifier.cli.main import main

raise SystemExit(main())
