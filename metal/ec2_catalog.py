"""The EC2 offer: which `.metal` instance types labbot lends, in which regions, at which hourly
price, booting which images. EC2's API does not return prices, so the operator states them in a
TOML file (LABBOT_EC2_CATALOG); a type without a price is refused with a sentence naming it.

    os = ["ubuntu_24_04"]

    [regions.us-east-1]
    name = "N. Virginia"
    subnet = "subnet-0123456789abcdef0"   # optional: the region's default VPC otherwise

    [types."c7g.metal"]
    name = "Graviton3, 64 cores, 128 GiB"
    hourly = 2.32          # dollars per hour, on-demand
    arch = "aarch64"       # x86_64 (default) or aarch64
    regions = ["us-east-1"]   # optional: every region listed above otherwise

    [[images]]
    os = "ubuntu_24_04"
    region = "us-east-1"
    arch = "aarch64"
    ami = "ami-0123456789abcdef0"

    [logins]               # optional: the user each image's SSH keys go to (cloud-init's
    ubuntu_24_04 = "ubuntu"  # default user); guessed from the OS name otherwise
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metal.catalog import CatalogError, dollars_to_cents
from metal.provider import Catalog, Metro, Plan

ARCHES = ("x86_64", "aarch64")
# cloud-init's default user on the common images, by the start of the OS slug.
DEFAULT_LOGINS = (
    ("ubuntu", "ubuntu"),
    ("debian", "admin"),
    ("amazon", "ec2-user"),
    ("al20", "ec2-user"),
    ("rhel", "ec2-user"),
    ("centos", "centos"),
    ("rocky", "rocky"),
    ("alma", "ec2-user"),
    ("fedora", "fedora"),
)
EXAMPLE = Path(__file__).with_name("ec2_catalog.example.toml")  # the demo's, and a template


@dataclass(frozen=True)
class Ec2Offer:
    """The catalog people choose from, and what EC2 needs to create each choice."""

    catalog: Catalog
    images: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (os, region, arch)
    subnets: dict[str, str] = field(default_factory=dict)  # region -> subnet id

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.catalog.metros)

    def image(self, os: str, region: str, arch: str) -> str | None:
        return self.images.get((os, region, arch))


def load_offer(path: Path) -> Ec2Offer:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogError(f"the EC2 catalog file {path} cannot be read: {error}") from error
    return parse_offer(data, str(path))


def parse_offer(data: dict[str, Any], where: str) -> Ec2Offer:
    regions = data.get("regions") or {}
    if not regions:
        raise CatalogError(f"{where} names no region; add one like [regions.us-east-1].")
    metros = {code: Metro(code, str(spec.get("name", code))) for code, spec in regions.items()}
    plans = {slug: _plan(slug, spec, metros, where) for slug, spec in _types(data, where).items()}
    images = {
        _image_key(entry, metros, where): str(entry["ami"]) for entry in data.get("images", ())
    }
    oses = tuple(data.get("os") or sorted({os for os, _, _ in images}))
    subnets = {code: str(spec["subnet"]) for code, spec in regions.items() if spec.get("subnet")}
    named = data.get("logins") or {}
    logins = {os: str(named.get(os) or _default_login(os)) for os in oses}
    return Ec2Offer(Catalog(plans, metros, oses, logins), images, subnets)


def _default_login(os: str) -> str:
    """The user an image's cloud-init puts SSH keys on; root only for an OS we do not know."""
    return next((user for prefix, user in DEFAULT_LOGINS if os.startswith(prefix)), "root")


def _types(data: dict[str, Any], where: str) -> dict[str, Any]:
    types = data.get("types") or {}
    if not types:
        raise CatalogError(f'{where} offers no instance type; add one like [types."c5.metal"].')
    return types


def _plan(slug: str, spec: dict[str, Any], metros: dict[str, Metro], where: str) -> Plan:
    if not slug.endswith(".metal"):
        raise CatalogError(
            f"{slug} in {where} is not a bare-metal type; labbot lends .metal types such as "
            "c5.metal or c7g.metal."
        )
    if "hourly" not in spec:
        raise CatalogError(
            f"{slug} in {where} has no hourly price, and EC2 does not say what it costs: add "
            "the on-demand price in dollars, like hourly = 4.08."
        )
    arch = str(spec.get("arch", "x86_64"))
    if arch not in ARCHES:
        raise CatalogError(f"{slug} in {where}: arch must be x86_64 or aarch64, not '{arch}'.")
    regions = tuple(spec.get("regions", ()))
    unknown = [r for r in regions if r not in metros]
    if unknown:
        raise CatalogError(
            f"{slug} in {where} is offered in {', '.join(unknown)}, which has no [regions] entry."
        )
    return Plan(
        slug,
        str(spec.get("name", slug)),
        dollars_to_cents(spec["hourly"]),
        arch,
        str(spec.get("specs", "")),
        regions,
    )


def _image_key(entry: dict[str, Any], metros: dict[str, Metro], where: str) -> tuple[str, str, str]:
    missing = [k for k in ("os", "region", "arch", "ami") if not entry.get(k)]
    if missing:
        raise CatalogError(f"an [[images]] entry in {where} lacks {', '.join(missing)}.")
    if entry["region"] not in metros:
        raise CatalogError(
            f"an image in {where} is for {entry['region']}, which has no [regions] entry."
        )
    return str(entry["os"]), str(entry["region"]), str(entry["arch"])


def missing_images(offer: Ec2Offer) -> list[str]:
    """Each (type, region, os) a person could ask for that has no image to boot, in words: the
    operator is told at start-up instead of a person finding out when the create fails."""
    gaps = []
    for plan in offer.catalog.plans.values():
        for region in plan.metros or offer.regions:
            gaps += [
                f"{os} on {plan.arch} in {region} (for {plan.slug})"
                for os in offer.catalog.oses
                if offer.image(os, region, plan.arch) is None
            ]
    return gaps
