"""`python -m dashrl.cli ...`, the same as the `dashrl` command."""

from dashrl.cli import main

raise SystemExit(main())
