"""labbot's benchmarks: `python -m benchmarks` (or `make bench`) runs every module below, each
in a fresh interpreter printing its own section; `python -m benchmarks engine` runs one.

Each module has a `main()` that prints its section and returns 0 (or None) when it ran, even if
a target was missed (the report says MISS); it raises, or returns non-zero, only on an error.
"""

from __future__ import annotations

# Run in this order.
MODULES = (
    "engine",
    "donors",
    "slack_ack",
    "activity",
    "packet_scale",
    "ec2_scale",
    "process",
    "delivery",
    "capacity",
)
