"""The plan and location catalog: the 2017 CNCF Community Infrastructure Lab as seed data,
overridable by the operator with a TOML file.

    os = ["ubuntu_16_04", "centos_7"]   # before any [table], or TOML puts it inside one

    [plans."c1.small.x86"]
    name = "Type 1"
    hourly = 0.40          # dollars per hour
    specs = "E3-1240 v3, 32 GB"
    metros = ["ams1", "ewr1"]   # optional: where it is offered

    [metros]
    ams1 = "Amsterdam"
"""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from metal.provider import Catalog, Metro, Plan

SEED_PLANS = (
    Plan("t1.small.x86", "Type 0", 7, "x86_64", "Atom C2550, 4 cores, 8 GB RAM, 80 GB SSD"),
    Plan(
        "c1.small.x86", "Type 1", 40, "x86_64", "Xeon E3-1240 v3, 4 cores, 32 GB RAM, 2x120 GB SSD"
    ),
    Plan("m1.xlarge.x86", "Type 2", 125, "x86_64", "2x Xeon E5-2650 v4, 24 cores, 256 GB RAM"),
    Plan("c1.large.arm", "Type 2A", 50, "aarch64", "Cavium ThunderX, 96 ARMv8 cores, 128 GB RAM"),
    Plan("c1.xlarge.x86", "Type 3", 175, "x86_64", "2x Xeon E5-2640 v3, 128 GB RAM, 1.6 TB NVMe"),
)

SEED_METROS = {
    "ewr1": "Parsippany, NJ",
    "sjc1": "Sunnyvale, CA",
    "ams1": "Amsterdam",
    "nrt1": "Tokyo",
    "atl1": "Atlanta",
    "dfw1": "Dallas",
    "iad1": "Ashburn, VA",
    "lax1": "Los Angeles",
    "ord1": "Chicago",
    "sea1": "Seattle",
    "fra2": "Frankfurt",
    "sin3": "Singapore",
    "syd2": "Sydney",
    "hkg1": "Hong Kong",
    "yyz1": "Toronto",
}

SEED_OSES = ("ubuntu_16_04", "ubuntu_18_04", "centos_7", "coreos_stable", "debian_9")


def seed() -> Catalog:
    return Catalog(
        plans={p.slug: p for p in SEED_PLANS},
        metros={code: Metro(code, name) for code, name in SEED_METROS.items()},
        oses=SEED_OSES,
    )


def dollars_to_cents(value: float | str) -> int:
    return int((Decimal(str(value)) * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class CatalogError(ValueError):
    pass


def load(path: Path) -> Catalog:
    """The operator's catalog file; anything it leaves out keeps the seed's value."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogError(f"the catalog file {path} cannot be read: {error}") from error
    base = seed()
    plans = dict(base.plans)
    for slug, spec in data.get("plans", {}).items():
        if "hourly" not in spec:
            raise CatalogError(f"plan {slug} in {path} needs an hourly price, like hourly = 0.40")
        plans[slug] = Plan(
            slug,
            spec.get("name", slug),
            dollars_to_cents(spec["hourly"]),
            spec.get("arch", "x86_64"),
            spec.get("specs", ""),
            tuple(spec.get("metros", ())),
        )
    metros = dict(base.metros)
    metros.update({code: Metro(code, name) for code, name in data.get("metros", {}).items()})
    return Catalog(plans, metros, tuple(data.get("os", base.oses)))
