"""The directory where every process of one `labbot serve` writes its Prometheus counters.

prometheus_client decides at import time whether it counts in memory or in files, so this runs
before anything imports it: `labbot serve` calls `metrics_dir()` first. An operator may name the
directory (PROMETHEUS_MULTIPROC_DIR); otherwise a temporary one is made and removed at exit.
Either way it starts empty, as prometheus_client requires: counts left by an earlier run would
be added to this one's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_dir(env: MutableMapping[str, str] = os.environ) -> Iterator[Path]:
    given = env.get(MULTIPROC_DIR)
    path = Path(given) if given else Path(tempfile.mkdtemp(prefix="labbot-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    env[MULTIPROC_DIR] = str(path)
    owner = os.getpid()
    try:
        yield path
    finally:
        # gunicorn's workers are forks that unwind this same stack when they exit: only the
        # process that made the directory removes it.
        if not given and os.getpid() == owner:
            shutil.rmtree(path, ignore_errors=True)
            env.pop(MULTIPROC_DIR, None)
