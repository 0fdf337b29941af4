"""`python -m benchmarks.engine`: the same as `python -m benchmarks engine`."""

from benchmarks.engine import main

raise SystemExit(main())
