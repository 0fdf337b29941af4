"""The configuration file (LABBOT_CONFIG), read through one typed schema.

The file holds the lab's `[policy]`, its `[foundation]`, the plan catalog (the tables of
metal.catalog), one `[[donor]]` table per donor (docs/donors.md) and the `[capacity]` of each
plan and metro (docs/booking.md). Every table is a pydantic
model that refuses keys it does not know and values of the wrong kind, so a mistake stops
start-up with one sentence naming the table, the key and what is accepted, before anything
runs. Credentials are never written in the file: a donor names the environment variables that
hold them (`token_env = "PACKET_TOKEN_CNCF"`), and bot.settings reads them from there.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from commands.donors import PROVIDERS, Capacity, Donor, Earmark
from commands.durations import EXAMPLES, parse_duration
from commands.process import BASIS_POINTS, CLASSES, format_share, parse_share
from metal.catalog import CatalogError, dollars_to_cents, load
from metal.ec2_catalog import ARCHES
from metal.provider import Catalog


class SettingsError(ValueError):
    """A setting that stops start-up, said in one sentence."""


def read_dollars(value: object) -> int:
    """An amount in dollars (`25000`, `25000.50`, `"$25,000"`) as cents; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("not an amount")
    text = str(value).strip().lstrip("$").replace(",", "").replace("_", "")
    try:
        cents = dollars_to_cents(text)
    except ArithmeticError:
        cents = -1
    if cents < 0:
        raise ValueError("not an amount")
    return cents


def read_percent(value: object) -> float:
    """A percentage above 0 and below 100 (`5%`, `2.5`) as a share of 1; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("not a percentage")
    share = float(str(value).strip().removesuffix("%")) / 100
    if not 0 < share < 1:
        raise ValueError("not a percentage")
    return share


_SIZES = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}


def read_per_hour(value: object) -> int:
    """Traffic an hour (`10MB/h`, `10MB`, `500kb`, bytes alone) as bytes, at least one;
    ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("not an amount of traffic")
    cleaned = str(value).strip().lower().replace(" ", "").removesuffix("/h")
    digits = cleaned.rstrip("kmgb")
    if cleaned[len(digits) :] not in _SIZES:
        raise ValueError("not an amount of traffic")
    amount = round(float(digits) * _SIZES[cleaned[len(digits) :]])
    if amount < 1:
        raise ValueError("not an amount of traffic")
    return amount


def _duration(zero: bool) -> BeforeValidator:
    def read(value: object) -> timedelta:
        if not isinstance(value, str):
            raise ValueError("not a duration")
        return parse_duration(value, zero=zero)

    return BeforeValidator(read)


def _share(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("not a share")
    return parse_share(str(value))


def _moment(value: object) -> datetime:
    """A TOML date or date-time (or the same written as text) as an aware UTC datetime."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC)
    raise ValueError("not a date")


def _accepts(text: str, **constraints: Any) -> Any:
    return Field(description=text, strict=True, **constraints)


# Each type carries what it accepts, in the words the sentence of a bad value uses.
Money = Annotated[
    int, BeforeValidator(read_dollars), Field(description="an amount in dollars like 25000")
]
Duration = Annotated[
    timedelta, _duration(False), Field(description=f"a duration in quotes like {EXAMPLES}")
]
MaybeNone = Annotated[
    timedelta,
    _duration(True),
    Field(description=f"a duration in quotes like {EXAMPLES}, or 0s for none"),
]
Share = Annotated[int, BeforeValidator(_share), Field(description='a share like "20%"')]
Percent = Annotated[
    float,
    BeforeValidator(read_percent),
    Field(description='a percentage above 0 and below 100 like "5%"'),
]
PerHour = Annotated[
    int,
    BeforeValidator(read_per_hour),
    Field(description='an amount of traffic an hour like "10MB/h" (B, KB, MB or GB)'),
]
Count = Annotated[int, _accepts("a whole number of at least 1", ge=1)]
Flag = Annotated[bool, _accepts("true or false")]
Text = Annotated[str, _accepts("text in quotes", min_length=1)]
Texts = Annotated[list[Text], Field(description='a list of names in quotes like ["a", "b"]')]
Moment = Annotated[
    datetime,
    BeforeValidator(_moment),
    Field(description="a date like 2027-06-30 or a time like 2027-06-30T12:00:00Z"),
]
SERVERS = "a whole number of servers, 0 or more"
Servers = Annotated[int, _accepts(SERVERS, ge=0)]
CapacityTables = Annotated[
    dict[str, dict[str, Servers]],
    Field(description='tables of plans like [capacity."c1.small.x86"] with ams1 = 20'),
]
DonorCapacity = Annotated[
    dict[str, dict[str, Servers]],
    Field(description='tables of plans like [donor.capacity."c1.large.arm"] with ams1 = 20'),
]
Month = Annotated[str, _accepts("a month like 2027-01", pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Class = Literal[CLASSES]
Classes = Annotated[list[Class], Field(description=f"a list of classes from {', '.join(CLASSES)}")]
Arch = Annotated[Literal[ARCHES], Field(description=" or ".join(ARCHES))]
EnvName = Annotated[
    str,
    _accepts(
        "the name of an environment variable like PACKET_TOKEN_CNCF (never the secret itself)",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
    ),
]
DonorName = Annotated[
    str,
    _accepts(
        'a short name of lowercase letters, digits, - and _ like "cloud-arm"',
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
    ),
]


class Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=Table)


class PolicyTable(Table):
    """[policy]: the lab's rules (commands.policy.Policy, less the foundation and the donors,
    which have tables of their own). Money in dollars, durations as text."""

    monthly_credit_cents: Money = None
    max_servers: Count = None
    min_lease: Duration = None
    max_lease: Duration = None
    max_total: Duration = None
    grace: MaybeNone = None
    reminders: Annotated[
        list[Duration], Field(description='a list of durations like ["24h", "1h"]')
    ] = None
    pending_per_user: Count = None
    project_cap_cents: Money = None
    decide_within: Duration = None
    delete_attempts: Count = None
    create_attempts: Count = None
    provision_timeout: Duration = None
    provision_poll: Duration = None
    orphan_grace: Duration = None
    reconcile_every: Duration = None
    claim_for: Duration = None
    provider_concurrency: Count = None
    sweep_concurrency: Count = None
    credit_alerts: Annotated[
        list[Annotated[int, Field(strict=True, ge=1, le=1000)]],
        Field(description="a list of percentages like [80, 100]"),
    ] = None
    default_os: Text = None
    reserved_share: Share = None
    writeup_after: Duration = None
    backstop_margin: Duration = None
    allow_self_approval: Flag = None
    idle_cpu: Percent = None
    idle_network: PerHour = None
    idle_after: Duration = None
    idle_snooze: Duration = None
    idle_escalate: Duration = None
    idle_reclaim: Duration = None  # left out: idle leases are never reclaimed early
    book_ahead: Duration = None
    lead_time: Duration = None
    bookings_per_project: Count = None


class Project(Table):
    name: Text
    maturity: str = ""


class FoundationTable(Table):
    projects: Annotated[
        list[Project],
        Field(description='a list like [{ name = "coredns", maturity = "graduated" }]'),
    ] = []
    members: Annotated[
        list[Text], Field(description='a list of names like ["Acme", "Initech"]')
    ] = []
    rank: Annotated[
        list[Class],
        Field(description=f"all of {', '.join(CLASSES)} in the order they are reviewed, once each"),
    ] = list(CLASSES)


class PlanTable(Table):
    """One plan of the catalog (metal.catalog)."""

    hourly: Annotated[float, _accepts("a price in dollars an hour like 0.40", gt=0)]
    name: Text = None
    arch: Arch = "x86_64"
    specs: Annotated[str, _accepts("text in quotes")] = ""
    metros: Texts = []


class CatalogTables(Table):
    """A catalog file: the OSes, the plans and the metros (metal.catalog)."""

    os: Texts = None
    plans: Annotated[
        dict[str, PlanTable], Field(description='tables like [plans."c1.small.x86"]')
    ] = {}
    metros: Annotated[
        dict[str, Text], Field(description='a table of names like ams1 = "Amsterdam"')
    ] = {}


class EarmarkTable(Table):
    share: Share
    projects: Texts = []
    classes: Classes = []


class DonorTable(Table):
    """[[donor]]: one donor's account, grant, dates and terms (commands.donors.Donor)."""

    name: DonorName
    provider: Annotated[Literal[PROVIDERS], Field(description=f"one of {', '.join(PROVIDERS)}")]
    monthly_grant: Money
    grants: Annotated[
        dict[Month, Money], Field(description="a table of months like { 2027-01 = 10000 }")
    ] = {}
    starts: Moment = None
    ends: Moment = None
    plans: Texts = []
    architectures: Annotated[list[Arch], Field(description=f"a list from {', '.join(ARCHES)}")] = []
    classes: Classes = []
    earmarks: Annotated[
        list[EarmarkTable],
        Field(description='a list like [{ share = "10%", projects = ["coredns"] }]'),
    ] = []
    reserved_share: Share = None
    capacity: DonorCapacity = {}
    # The provider account: which keys belong to which provider is ACCOUNT_KEYS.
    catalog: Annotated[str, _accepts("the path of a catalog file in quotes")] = None
    token_env: EnvName = None
    project_id: Text = None
    api_url: Text = None
    backstop_role: Text = None
    endpoint_url: Text = None
    profile: Text = None
    access_key_env: EnvName = None
    secret_key_env: EnvName = None

    def where(self) -> str:
        return f'LABBOT_CONFIG: [[donor]] "{self.name}"'

    def rules(self) -> Donor:
        return Donor(
            name=self.name,
            provider=self.provider,
            monthly_grant_cents=self.monthly_grant,
            grants_by_month=tuple(sorted(self.grants.items())),
            starts_at=self.starts,
            ends_at=self.ends,
            plans=frozenset(self.plans),
            architectures=frozenset(self.architectures),
            classes=frozenset(self.classes),
            earmarks=tuple(
                Earmark(e.share, frozenset(p.lower() for p in e.projects), frozenset(e.classes))
                for e in self.earmarks
            ),
            reserved_share=self.reserved_share,
            capacity=capacity_rules(self.capacity),
        )


# A provider account's keys, by provider; the first ones of each are required.
ACCOUNT_KEYS = {
    "simulated": ((), ("catalog",)),
    "packet": (("token_env", "project_id"), ("api_url",)),
    "ec2": (
        ("catalog", "backstop_role"),
        ("endpoint_url", "profile", "access_key_env", "secret_key_env"),
    ),
}
_ANY_ACCOUNT_KEY = {key for keys in ACCOUNT_KEYS.values() for group in keys for key in group}


class ConfigTables(CatalogTables):
    policy: Annotated[PolicyTable, Field(description="a table, [policy]")] = PolicyTable()
    foundation: Annotated[FoundationTable, Field(description="a table, [foundation]")] = (
        FoundationTable()
    )
    donor: Annotated[
        list[DonorTable], Field(description="[[donor]] tables, one for each donor")
    ] = []
    capacity: CapacityTables = {}


def capacity_rules(tables: dict[str, dict[str, int]]) -> Capacity:
    """A `[capacity]` table (the lab's, or a donor's) as the rules hold it: (plan, metro,
    servers) in a stable order."""
    return tuple(
        sorted(
            (plan, metro, servers)
            for plan, metros in tables.items()
            for metro, servers in metros.items()
        )
    )


@dataclass(frozen=True)
class ConfigFile:
    """What the file says, read and checked: Policy fields to change, the catalog, the donors
    (their tables, with file paths made absolute)."""

    policy: dict[str, Any]
    catalog: Catalog
    donors: tuple[DonorTable, ...]


def read_config(path: Path) -> ConfigFile:
    tables = _validated(ConfigTables, _toml(path), "LABBOT_CONFIG")
    try:
        catalog = load(path)
    except CatalogError as error:
        raise SettingsError(f"LABBOT_CONFIG: {error}") from error
    donors = tuple(
        donor.model_copy(update={"catalog": str(path.parent / donor.catalog)})
        if donor.catalog
        else donor
        for donor in tables.donor
    )
    _check_donors(donors)
    policy = tables.policy.model_dump(exclude_unset=True)
    if donors and "monthly_credit_cents" in policy:
        raise SettingsError(
            "LABBOT_CONFIG: [policy] monthly_credit_cents is the grant of a lab without [[donor]] "
            "tables; give each [[donor]] its monthly_grant instead."
        )
    if tables.capacity:
        policy["capacity"] = capacity_rules(tables.capacity)
    for key in ("reminders", "credit_alerts"):
        if key in policy:
            policy[key] = tuple(sorted(policy[key], reverse=key == "reminders"))
    return ConfigFile(
        {**policy, **_foundation(tables.foundation)},
        catalog,
        donors,
    )


def read_catalog(path: Path, where: str) -> Catalog:
    """A donor's own catalog file, checked by the same schema as the catalog tables."""
    _validated(CatalogTables, _toml(path, where), where)
    try:
        return load(path)
    except CatalogError as error:
        raise SettingsError(f"{where}: {error}") from error


def _toml(path: Path, where: str = "LABBOT_CONFIG") -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"{where}: the file {path} cannot be read: {error}") from error


def _validated(model: type[T], data: dict[str, Any], prefix: str) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise SettingsError(_sentence(error.errors()[0], data, model, prefix)) from None


def _foundation(table: FoundationTable) -> dict[str, Any]:
    if sorted(table.rank) != sorted(CLASSES):
        raise SettingsError(
            f"LABBOT_CONFIG: [foundation] rank must be "
            f"{FoundationTable.model_fields['rank'].description}, not {_shown(table.rank)}."
        )
    changes: dict[str, Any] = {"rank": tuple(table.rank)}
    if table.projects:
        changes["foundation_projects"] = tuple((p.name.lower(), p.maturity) for p in table.projects)
    if table.members:
        changes["members"] = tuple(table.members)
    return changes


def _check_donors(donors: tuple[DonorTable, ...]) -> None:
    """What one key's type cannot say: names once each, dates in order, shares that fit, and
    each provider account with the keys of its provider."""
    seen: set[str] = set()
    for donor in donors:
        where = donor.where()
        if donor.name in seen:
            raise SettingsError(f"{where} is named twice; give each [[donor]] its own name.")
        seen.add(donor.name)
        if donor.starts and donor.ends and donor.ends <= donor.starts:
            raise SettingsError(f"{where} ends ({donor.ends:%Y-%m-%d}) before it starts.")
        shares = sum(e.share for e in donor.earmarks) + (donor.reserved_share or 0)
        if shares > BASIS_POINTS:
            raise SettingsError(
                f"{where} earmarks and reserved_share keep {format_share(shares)} of its month; "
                "together they may keep at most 100%."
            )
        required, optional = ACCOUNT_KEYS[donor.provider]
        given = donor.model_fields_set & _ANY_ACCOUNT_KEY
        stray = sorted(given - set(required) - set(optional))
        if stray:
            raise SettingsError(
                f"{where} {stray[0]} is not a setting of a {donor.provider} donor; "
                f"its settings are {', '.join(required + optional)}."
            )
        missing = [key for key in required if key not in given]
        if missing:
            field = DonorTable.model_fields[missing[0]]
            raise SettingsError(
                f"{where} needs {missing[0]} for provider {donor.provider}: {field.description}."
            )
        if ("access_key_env" in given) != ("secret_key_env" in given):
            raise SettingsError(f"{where} needs access_key_env and secret_key_env together.")


# --- a validation error in one sentence -----------------------------------------------------


def _sentence(error: dict[str, Any], data: dict[str, Any], top: type[Table], prefix: str) -> str:
    table, model, rest = _place(error["loc"], data, top)
    key = str(rest[0]) if rest else ""
    where = f"{prefix}: {table}".strip() if table else prefix
    known = list(model.model_fields) if model else []
    if error["type"] == "extra_forbidden" and len(rest) == 1:
        what = "setting" if table else "table or setting"
        return f"{where} has no {what} '{key}'; known: {', '.join(known)}."
    field = model.model_fields.get(key) if model else None
    accepted = (
        field.description
        if field and field.description
        else SERVERS
        if "capacity." in table
        else "a place's name in quotes"
    )
    if error["type"] == "missing" and len(rest) == 1:
        return f"{where} needs {key}: {accepted}."
    if error["type"] in ("extra_forbidden", "missing"):  # inside a key's value (an earmark)
        unknown = error["type"] == "extra_forbidden"
        problem = "is not one of its settings" if unknown else "is missing"
        return f"{where} {key} must be {accepted}; '{rest[-1]}' {problem}."
    said = "" if key.endswith("_env") else f", not {_shown(error['input'])}"
    return f"{where}{' ' if table else ': '}{key} must be {accepted}{said}."


def _place(
    loc: tuple[Any, ...], data: dict[str, Any], top: type[Table]
) -> tuple[str, type[Table] | None, tuple[Any, ...]]:
    """Which table an error's location is in (as the file writes it), its model, and the
    location inside it."""
    head = loc[0] if loc else ""
    if head == "donor" and len(loc) > 4 and loc[2] == "capacity":
        return f'{_donor_table(data, loc[1])} capacity."{loc[3]}"', None, loc[4:]
    if head == "donor" and len(loc) > 2:
        return _donor_table(data, loc[1]), DonorTable, loc[2:]
    if head == "plans" and len(loc) > 2:
        return f'[plans."{loc[1]}"]', PlanTable, loc[2:]
    if head in ("policy", "foundation") and len(loc) > 1:
        return f"[{head}]", PolicyTable if head == "policy" else FoundationTable, loc[1:]
    if head == "metros" and len(loc) > 1:
        return "[metros]", None, loc[1:]
    if head == "capacity" and len(loc) > 2:
        return f'[capacity."{loc[1]}"]', None, loc[2:]
    return "", top, loc


def _donor_table(data: dict[str, Any], index: int) -> str:
    entry = (data.get("donor") or [None] * (index + 1))[index]
    name = entry.get("name") if isinstance(entry, dict) else None
    return f'[[donor]] "{name}"' if isinstance(name, str) else f"[[donor]] number {index + 1}"


def _shown(value: object) -> str:
    if isinstance(value, str):
        return f"'{value[:60]}'" if len(value) <= 60 else f"'{value[:57]}...'"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a table"
    text = re.sub(r"\s+", " ", str(value))
    return text if len(text) <= 60 else f"{text[:57]}..."
