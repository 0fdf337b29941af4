"""`python -m benchmarks [module ...]`: run the named benchmark modules, or all of them.

Exit status: 0 when every module ran (missed targets are reported as MISS, not as failures);
1 when a module raised or returned non-zero; 2 for a module named on the command line that does
not exist.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import traceback

from benchmarks import MODULES


def _load(name: str):
    """The module, or None when there is no such benchmark. An import that fails for any
    other reason (a bug in the module, a missing dependency) is an error."""
    qualified = f"benchmarks.{name}"
    try:
        return importlib.import_module(qualified)
    except ModuleNotFoundError as error:
        if error.name != qualified:
            raise
        print(f"benchmarks: there is no benchmark module '{name}'", file=sys.stderr)
        return None


def run(name: str) -> int:
    try:
        module = _load(name)
    except Exception:
        traceback.print_exc()
        print(f"benchmarks.{name}: could not be imported", file=sys.stderr)
        return 1
    if module is None:
        return 2
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
    if len(args) == 1:
        return run(args[0])
    # Each module in a fresh interpreter: one module's memory peak, threads or warm caches must
    # not colour the next one's figures.
    names = args or list(MODULES)
    return max(
        subprocess.run([sys.executable, "-m", "benchmarks", name], check=False).returncode
        for name in names
    )


if __name__ == "__main__":
    sys.exit(main())
