"""Settings from the environment (and an optional TOML file for the catalog and the policy).

A bad value stops start-up with one sentence naming the setting and what it accepts. Secrets
are read here and kept out of every repr, log line and message.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path

from commands.durations import DurationError, parse_duration
from commands.policy import Policy, Roles
from commands.process import CLASSES, parse_share
from metal.catalog import CatalogError, dollars_to_cents, load, seed
from metal.ec2_catalog import Ec2Offer, load_offer, missing_images
from metal.forge_http import GITHUB_API_URL, GITLAB_API_URL
from metal.provider import Catalog
from storage.db import DEFAULT_URL

HEALTH_SWEEPS_MISSED = 3


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    provider: str = "simulated"
    policy: Policy = field(default_factory=Policy)
    roles: Roles = field(default_factory=Roles)
    catalog: Catalog = field(default_factory=seed)
    sweep_interval: timedelta = timedelta(seconds=60)
    command: str = "/lab"
    review_channel: str = "#lab-review"
    admin_channel: str = "#lab-admin"
    reviewer_group: str | None = None
    slack_api_url: str | None = None
    port: int = 3000
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    packet_auth_token: str | None = field(default=None, repr=False)
    packet_project_id: str | None = None
    packet_api_url: str = "api.packet.net"
    packet_timeout: float = 30.0
    ec2_catalog: str | None = None
    ec2_backstop_role: str | None = None
    ec2_timeout: float = 30.0
    ec2_retry_mode: str = "standard"
    ec2_max_attempts: int = 5
    aws_endpoint_url: str | None = None
    simulated_provision: timedelta = timedelta(seconds=60)
    github_api_url: str = GITHUB_API_URL
    gitlab_api_url: str = GITLAB_API_URL
    github_token: str | None = field(default=None, repr=False)
    gitlab_token: str | None = field(default=None, repr=False)
    forge_timeout: float = 5.0
    web_concurrency: int = 2
    workers: int = 1
    health_sweep_age: timedelta = timedelta(minutes=10)
    log_format: str = "text"


_POLICY_DURATIONS = {
    "LABBOT_GRACE": "grace",
    "LABBOT_MIN_LEASE": "min_lease",
    "LABBOT_MAX_LEASE": "max_lease",
    "LABBOT_MAX_TOTAL": "max_total",
    "LABBOT_DECIDE_WITHIN": "decide_within",
    "LABBOT_ORPHAN_GRACE": "orphan_grace",
    "LABBOT_RECONCILE_EVERY": "reconcile_every",
    "LABBOT_CLAIM_FOR": "claim_for",
    "LABBOT_PROVISION_TIMEOUT": "provision_timeout",
    "LABBOT_WRITEUP_AFTER": "writeup_after",
    "LABBOT_PROVISION_POLL": "provision_poll",
}
_MAY_BE_ZERO = {"LABBOT_GRACE", "grace"}  # reclaiming exactly at the end is a lab's choice
_POLICY_INTS = {
    "LABBOT_MAX_SERVERS": "max_servers",
    "LABBOT_PENDING_PER_USER": "pending_per_user",
    "LABBOT_DELETE_ATTEMPTS": "delete_attempts",
    "LABBOT_CREATE_ATTEMPTS": "create_attempts",
    "LABBOT_PROVIDER_CONCURRENCY": "provider_concurrency",
    "LABBOT_SWEEP_CONCURRENCY": "sweep_concurrency",
}


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    base = _from_file(env.get("LABBOT_CONFIG"))
    policy = _policy(env, base.policy)
    settings = replace(
        base,
        database_url=env.get("DATABASE_URL", base.database_url),
        provider=_choice(
            env, "LABBOT_PROVIDER", ("simulated", "packet", "ec2"), _default_provider(env)
        ),
        policy=policy,
        roles=Roles(
            reviewers=_ids(env.get("LABBOT_REVIEWERS", "")),
            admins=_ids(env.get("LABBOT_ADMINS", "")),
        ),
        sweep_interval=_duration(env, "LABBOT_SWEEP_INTERVAL", base.sweep_interval),
        command=env.get("LABBOT_COMMAND", base.command),
        review_channel=env.get("LABBOT_REVIEW_CHANNEL", base.review_channel),
        admin_channel=env.get("LABBOT_ADMIN_CHANNEL", base.admin_channel),
        reviewer_group=env.get("LABBOT_REVIEWER_GROUP") or None,
        slack_api_url=env.get("SLACK_API_URL") or None,
        port=_int(env, "PORT", base.port),
        slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
        slack_signing_secret=env.get("SLACK_SIGNING_SECRET") or None,
        slack_app_token=env.get("SLACK_APP_TOKEN") or None,
        packet_auth_token=env.get("PACKET_AUTH_TOKEN") or None,
        packet_project_id=env.get("PACKET_PROJECT_ID") or None,
        packet_api_url=env.get("PACKET_API_URL", base.packet_api_url),
        packet_timeout=_duration(env, "PACKET_TIMEOUT", timedelta(seconds=30)).total_seconds(),
        simulated_provision=_duration(env, "LABBOT_SIMULATED_PROVISION", base.simulated_provision),
        github_api_url=env.get("GITHUB_API_URL") or base.github_api_url,
        gitlab_api_url=env.get("GITLAB_API_URL") or base.gitlab_api_url,
        github_token=env.get("GITHUB_TOKEN") or None,
        gitlab_token=env.get("GITLAB_TOKEN") or None,
        forge_timeout=_duration(env, "LABBOT_FORGE_TIMEOUT", timedelta(seconds=5)).total_seconds(),
        ec2_catalog=env.get("LABBOT_EC2_CATALOG") or None,
        ec2_backstop_role=env.get("LABBOT_EC2_BACKSTOP_ROLE") or None,
        ec2_timeout=_duration(env, "LABBOT_EC2_TIMEOUT", timedelta(seconds=30)).total_seconds(),
        ec2_retry_mode=_choice(env, "LABBOT_EC2_RETRY_MODE", ("standard", "adaptive"), "standard"),
        ec2_max_attempts=_int(env, "LABBOT_EC2_MAX_ATTEMPTS", base.ec2_max_attempts, minimum=1),
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        **_operations(env, base),
    )
    if "LABBOT_PROVISION_POLL" in env or settings.provider != "simulated":
        return settings
    return replace(settings, policy=replace(policy, provision_poll=simulated_poll(settings)))


def simulated_poll(settings: Settings) -> timedelta:
    """The simulated provider brings servers up in LABBOT_SIMULATED_PROVISION: ask four times
    in that span (at most every 30 s, at least every second) rather than on Packet's pace."""
    quarter = settings.simulated_provision / 4
    return max(timedelta(seconds=1), min(settings.policy.provision_poll, quarter))


def _operations(env: Mapping[str, str], base: Settings) -> dict:
    """How `labbot serve` runs: web workers, when it calls itself unhealthy, how it logs."""
    sweep_interval = _duration(env, "LABBOT_SWEEP_INTERVAL", base.sweep_interval)
    # Unset, it follows a long interval: three sweeps missed, and never under ten minutes.
    default_age = max(base.health_sweep_age, HEALTH_SWEEPS_MISSED * sweep_interval)
    health_age = _duration(env, "LABBOT_HEALTH_SWEEP_AGE", default_age)
    if health_age <= sweep_interval:
        raise SettingsError(
            "LABBOT_HEALTH_SWEEP_AGE must be longer than LABBOT_SWEEP_INTERVAL, or every "
            "wait between two sweeps would look like a stopped sweep."
        )
    return {
        "web_concurrency": _int(env, "WEB_CONCURRENCY", base.web_concurrency, minimum=1),
        "workers": _int(env, "LABBOT_WORKERS", base.workers, minimum=0),
        "health_sweep_age": health_age,
        "log_format": _choice(env, "LABBOT_LOG_FORMAT", ("text", "json"), base.log_format),
    }


def require_packet(settings: Settings) -> None:
    for name, value in (
        ("PACKET_AUTH_TOKEN", settings.packet_auth_token),
        ("PACKET_PROJECT_ID", settings.packet_project_id),
    ):
        if not value:
            raise SettingsError(f"{name} is not set; LABBOT_PROVIDER=packet needs it.")


def require_ec2(settings: Settings) -> Ec2Offer:
    """The EC2 offer from LABBOT_EC2_CATALOG, with every gap said in one sentence. AWS
    credentials are not settings of labbot's: boto3's standard chain finds them."""
    for name, value in (
        ("LABBOT_EC2_CATALOG", settings.ec2_catalog),
        ("LABBOT_EC2_BACKSTOP_ROLE", settings.ec2_backstop_role),
    ):
        if not value:
            raise SettingsError(f"{name} is not set; LABBOT_PROVIDER=ec2 needs it.")
    try:
        offer = load_offer(Path(settings.ec2_catalog))
    except CatalogError as error:
        raise SettingsError(f"LABBOT_EC2_CATALOG: {error}") from error
    gaps = missing_images(offer)
    if gaps:
        raise SettingsError(
            f"LABBOT_EC2_CATALOG: no [[images]] entry for {'; '.join(gaps[:5])}"
            + (f" and {len(gaps) - 5} more" if len(gaps) > 5 else "")
            + "; add an ami for each."
        )
    return offer


def _default_provider(env: Mapping[str, str]) -> str:
    return "packet" if env.get("PACKET_AUTH_TOKEN") else "simulated"


def _policy(env: Mapping[str, str], base: Policy) -> Policy:
    changes: dict = {}
    for name, attr in _POLICY_DURATIONS.items():
        changes[attr] = _duration(env, name, getattr(base, attr))
    for name, attr in _POLICY_INTS.items():
        changes[attr] = _int(env, name, getattr(base, attr), minimum=1)
    if "LABBOT_MONTHLY_CREDIT" in env:
        changes["monthly_credit_cents"] = _money(env, "LABBOT_MONTHLY_CREDIT")
    if "LABBOT_PROJECT_CAP" in env:
        changes["project_cap_cents"] = _money(env, "LABBOT_PROJECT_CAP")
    if "LABBOT_RESERVED_SHARE" in env:
        changes["reserved_share"] = _share("LABBOT_RESERVED_SHARE", env["LABBOT_RESERVED_SHARE"])
    if "LABBOT_REMINDERS" in env:
        changes["reminders"] = _reminders(env["LABBOT_REMINDERS"])
    if "LABBOT_ALLOW_SELF_APPROVAL" in env:
        changes["allow_self_approval"] = _flag(env, "LABBOT_ALLOW_SELF_APPROVAL")
    policy = replace(base, **changes)
    if policy.min_lease > policy.max_lease:
        raise SettingsError("LABBOT_MIN_LEASE is longer than LABBOT_MAX_LEASE; make it shorter.")
    if policy.max_lease > policy.max_total:
        raise SettingsError(
            "LABBOT_MAX_LEASE is longer than LABBOT_MAX_TOTAL; raise LABBOT_MAX_TOTAL."
        )
    return policy


def _duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    if name not in env:
        return default
    try:
        return parse_duration(env[name], zero=name in _MAY_BE_ZERO)
    except DurationError as error:
        raise SettingsError(f"{name}: {error}.") from error


def _reminders(text: str) -> tuple[timedelta, ...]:
    try:
        return tuple(
            sorted((parse_duration(p) for p in text.split(",") if p.strip()), reverse=True)
        )
    except DurationError as error:
        raise SettingsError(f"LABBOT_REMINDERS: {error}; list them like 24h,1h.") from error


def _share(name: str, text: str) -> int:
    try:
        return parse_share(text)
    except ValueError as error:
        raise SettingsError(f"{name}: {error}.") from error


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    if name not in env:
        return default
    try:
        value = int(env[name])
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SettingsError(
            f"{name} must be a whole number of at least {minimum}, not '{env[name]}'."
        )
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env[name].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be yes or no, not '{env[name]}'.")


def _money(env: Mapping[str, str], name: str) -> int:
    text = env[name].strip().lstrip("$").replace(",", "").replace("_", "")
    try:
        cents = dollars_to_cents(text)
    except ArithmeticError:
        cents = -1
    if cents < 0:
        raise SettingsError(
            f"{name} must be an amount in dollars like 25000 or 25000.00, not '{env[name]}'."
        )
    return cents


def _choice(env: Mapping[str, str], name: str, options: tuple[str, ...], default: str) -> str:
    value = env.get(name, default)
    if value not in options:
        raise SettingsError(f"{name} must be one of {', '.join(options)}, not '{value}'.")
    return value


def _ids(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.replace(" ", ",").split(",") if part.strip())


def _from_file(path: str | None) -> Settings:
    """LABBOT_CONFIG: a TOML file with [policy] (same names as the Policy fields, durations as
    strings, money in dollars) and the catalog tables of metal.catalog."""
    if not path:
        return Settings()
    try:
        data = tomllib.loads(Path(path).read_text())
        catalog = load(Path(path))
    except (OSError, tomllib.TOMLDecodeError, CatalogError) as error:
        raise SettingsError(f"LABBOT_CONFIG: {error}") from error
    policy = Policy()
    known = {f.name: f for f in fields(Policy)}
    changes = {}
    for key, value in data.get("policy", {}).items():
        if key not in known:
            raise SettingsError(
                f"LABBOT_CONFIG: [policy] has no setting '{key}'; known: {', '.join(known)}."
            )
        current = getattr(policy, key)
        try:
            if isinstance(current, timedelta):
                value = parse_duration(str(value), zero=key in _MAY_BE_ZERO)
            elif key.endswith("_cents"):
                value = dollars_to_cents(value)
            elif key == "reminders":
                value = tuple(parse_duration(str(v)) for v in value)
            elif key == "reserved_share":
                value = _share("LABBOT_CONFIG: [policy] reserved_share", str(value))
        except DurationError as error:
            raise SettingsError(f"LABBOT_CONFIG: [policy] {key}: {error}.") from error
        changes[key] = value
    changes.update(_foundation(data.get("foundation", {})))
    return Settings(policy=replace(policy, **changes), catalog=catalog)


def _foundation(table: dict) -> dict:
    """[foundation]: `projects = [{ name = "coredns", maturity = "graduated" }, ...]`,
    `members = ["Acme", ...]`, and optionally `rank = ["foundation", "member", "other"]`."""
    where = "LABBOT_CONFIG: [foundation]"
    unknown = set(table) - {"projects", "members", "rank"}
    if unknown:
        raise SettingsError(
            f"{where} has no setting '{sorted(unknown)[0]}'; known: projects, members, rank."
        )
    projects = table.get("projects", [])
    if not isinstance(projects, list) or not all(
        isinstance(p, dict) and isinstance(p.get("name"), str) and p["name"] for p in projects
    ):
        raise SettingsError(
            f"{where} projects must be a list like "
            '[{ name = "coredns", maturity = "graduated" }].'
        )
    members = table.get("members", [])
    if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
        raise SettingsError(f'{where} members must be a list of names like ["Acme", "Initech"].')
    rank = tuple(table.get("rank", CLASSES))
    if sorted(rank) != sorted(CLASSES):
        raise SettingsError(f"{where} rank must order all of {', '.join(CLASSES)}, once each.")
    changes: dict = {"rank": rank}
    if projects:
        changes["foundation_projects"] = tuple(
            (p["name"].lower(), str(p.get("maturity", ""))) for p in projects
        )
    if members:
        changes["members"] = tuple(members)
    return changes
