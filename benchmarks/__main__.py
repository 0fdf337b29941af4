"""`python -m benchmarks [module ...]`: run the named benchmark modules, or all that exist.

Exit status: 0 when every module ran (missed targets are reported as MISS, not as failures);
1 when a module raised or returned non-zero; 2 for a module named on the command line that does
not exist.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback

from benchmarks import MODULES


def _load(name: str, *, required: bool):
    """The module, or None when it does not exist (yet). An import that fails for any other
    reason (a bug in the module, a missing dependency) is an error, not a skip."""
    qualified = f"benchmarks.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if error.name != qualified:
            raise
        if required:
            print(f"benchmarks: there is no benchmark module '{name}'", file=sys.stderr)
        else:
            print(f"\n(benchmarks.{name}: not present, skipped)", flush=True)
        return None


def run(name: str, *, required: bool) -> int:
    try:
        module = _load(name, required=required)
    except Exception:
        traceback.print_exc()
        print(f"benchmarks.{name}: could not be imported", file=sys.stderr)
        return 1
    if module is None:
        return 2 if required else 0
    main = getattr(module, "main", None)
    if not callable(main):
        print(f"benchmarks.{name} has no main()", file=sys.stderr)
        return 1
    saved = sys.argv
    sys.argv = [f"benchmarks.{name}"]  # a module that parses argv must not see our arguments
    start = time.perf_counter()
    try:
        status = main()
    except SystemExit as done:
        status = done.code
    except Exception:
        traceback.print_exc()
        print(f"benchmarks.{name}: failed with an error", file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    print(f"\n(benchmarks.{name} took {time.perf_counter() - start:.1f} s)", flush=True)
    if status not in (None, 0):
        print(f"benchmarks.{name}: exited with status {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.strip())
        print(f"\nmodules, in order: {', '.join(MODULES)}")
        return 0
    names = args or list(MODULES)
    worst = 0
    for name in names:
        worst = max(worst, run(name, required=bool(args)))
    return worst


if __name__ == "__main__":
    sys.exit(main())
