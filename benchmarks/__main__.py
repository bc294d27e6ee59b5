"""`python -m benchmarks [--quick] [--only NAME ...]`."""

from benchmarks.run import main

raise SystemExit(main())
