"""Settings from the environment and the configuration file (LABBOT_CONFIG, bot.config_file).

A bad value stops start-up with one sentence naming the setting and what it accepts. Secrets
are read here, from the environment only, and kept out of every repr, log line and message.
A lab configured from the environment alone has one donor (FIRST_DONOR) on one provider
account; a file with [[donor]] tables has one account per donor (`Settings.accounts()`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from bot.config_file import (
    DonorTable,
    SettingsError,
    read_catalog,
    read_config,
    read_dollars,
    read_per_hour,
    read_percent,
)
from commands.donors import FIRST_DONOR
from commands.durations import DurationError, parse_duration
from commands.policy import Policy, Roles
from commands.process import parse_share
from metal.catalog import CatalogError, seed
from metal.ec2_catalog import Ec2Offer, load_offer, missing_images
from metal.forge_http import GITHUB_API_URL, GITLAB_API_URL
from metal.provider import Catalog
from metal.reporter import usable_url
from storage.db import DEFAULT_URL

HEALTH_SWEEPS_MISSED = 3
MAX_NICENESS = 19  # the lowest CPU priority a process can take (`nice`)

T = TypeVar("T")
ACTIVITY_PATH = "/activity"  # where `labbot serve` takes the servers' activity reports


@dataclass(frozen=True)
class Account:
    """One donor's provider account: the backend and what it needs to reach it. `table` is
    where it was configured, for sentences: "" for the environment, else its [[donor]] table."""

    donor: str = FIRST_DONOR
    provider: str = "simulated"
    table: str = ""
    catalog: Catalog | None = None  # simulated: its own plans (None: the lab's catalog)
    packet_auth_token: str | None = field(default=None, repr=False)
    packet_token_name: str = "PACKET_AUTH_TOKEN"  # the variable it was read from
    packet_project_id: str | None = None
    packet_api_url: str = "api.packet.net"
    ec2_catalog: str | None = None
    ec2_backstop_role: str | None = None
    aws_endpoint_url: str | None = None
    aws_profile: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)

    def setting(self, env_name: str, key: str) -> str:
        """How the sentence about a setting names it: the variable, or the table's key."""
        return f"{self.table} {key}" if self.table else env_name


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
    # How much lower than the web processes' the CPU priority of the workers `labbot serve`
    # runs beside them is (`nice`): on a shared machine acks come first (issue 21).
    worker_niceness: int = 10
    health_sweep_age: timedelta = timedelta(minutes=10)
    log_format: str = "text"
    # Where Slack and the servers reach labbot (https://labbot.example.org); None: nowhere
    # (Socket Mode, a lab behind a firewall), and the servers do not report their activity.
    public_url: str | None = None
    activity_reports: bool = True  # LABBOT_ACTIVITY_REPORTS=off: servers get no reporter
    # One account per [[donor]] table, in the file's order; none: the environment's one donor.
    donor_accounts: tuple[Account, ...] = ()

    def accounts(self) -> tuple[Account, ...]:
        """Each donor's provider account, the first donor's first."""
        return self.donor_accounts or (
            Account(
                provider=self.provider,
                packet_auth_token=self.packet_auth_token,
                packet_project_id=self.packet_project_id,
                packet_api_url=self.packet_api_url,
                ec2_catalog=self.ec2_catalog,
                ec2_backstop_role=self.ec2_backstop_role,
                aws_endpoint_url=self.aws_endpoint_url,
            ),
        )


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
    "LABBOT_IDLE_AFTER": "idle_after",
    "LABBOT_IDLE_SNOOZE": "idle_snooze",
    "LABBOT_IDLE_ESCALATE": "idle_escalate",
    "LABBOT_BOOK_AHEAD": "book_ahead",
    "LABBOT_LEAD_TIME": "lead_time",
}
# Reclaiming exactly at the end, or creating a booking's servers only at its start, is a
# lab's choice.
_MAY_BE_ZERO = {"LABBOT_GRACE", "LABBOT_LEAD_TIME"}
_POLICY_INTS = {
    "LABBOT_MAX_SERVERS": "max_servers",
    "LABBOT_PENDING_PER_USER": "pending_per_user",
    "LABBOT_DELETE_ATTEMPTS": "delete_attempts",
    "LABBOT_CREATE_ATTEMPTS": "create_attempts",
    "LABBOT_PROVIDER_CONCURRENCY": "provider_concurrency",
    "LABBOT_SWEEP_CONCURRENCY": "sweep_concurrency",
    "LABBOT_BOOKINGS_PER_PROJECT": "bookings_per_project",
}


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    base = _from_file(env.get("LABBOT_CONFIG"), env)
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
    settings = replace(settings, policy=replace(policy, activity_url=activity_url(settings)))
    policy = settings.policy
    if "LABBOT_PROVISION_POLL" in env or any(
        account.provider != "simulated" for account in settings.accounts()
    ):
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
        "worker_niceness": _read(
            "LABBOT_WORKER_NICENESS",
            env.get("LABBOT_WORKER_NICENESS", str(base.worker_niceness)),
            _niceness,
            f"a whole number from 0 (the web processes' priority) to {MAX_NICENESS} (the lowest)",
        ),
        "health_sweep_age": health_age,
        "log_format": _choice(env, "LABBOT_LOG_FORMAT", ("text", "json"), base.log_format),
        "public_url": _public_url(env),
        "activity_reports": _flag(env, "LABBOT_ACTIVITY_REPORTS")
        if "LABBOT_ACTIVITY_REPORTS" in env
        else base.activity_reports,
    }


def _public_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("LABBOT_PUBLIC_URL") or "").strip().rstrip("/")
    if url and not usable_url(url + ACTIVITY_PATH):
        raise SettingsError(
            f"LABBOT_PUBLIC_URL must be an http(s) URL like https://labbot.example.org, not "
            f"'{env['LABBOT_PUBLIC_URL']}'."
        )
    return url or None


def activity_url(settings: Settings) -> str:
    """Where the servers report their activity, or "" where they do not: no public URL, Socket
    Mode (labbot serves no HTTP then), or LABBOT_ACTIVITY_REPORTS=off."""
    if not settings.public_url or settings.slack_app_token or not settings.activity_reports:
        return ""
    return settings.public_url + ACTIVITY_PATH


def require_packet(account: Account) -> None:
    """(A [[donor]] table's account was checked when the file was read.)"""
    for name, value in (
        ("PACKET_AUTH_TOKEN", account.packet_auth_token),
        ("PACKET_PROJECT_ID", account.packet_project_id),
    ):
        if not value:
            raise SettingsError(f"{name} is not set; LABBOT_PROVIDER=packet needs it.")


def require_ec2(account: Account) -> Ec2Offer:
    """The EC2 offer from LABBOT_EC2_CATALOG (or the donor's catalog), with every gap said in
    one sentence. Without a donor's own keys or profile, boto3's standard chain finds the AWS
    credentials."""
    for name, value in (
        ("LABBOT_EC2_CATALOG", account.ec2_catalog),
        ("LABBOT_EC2_BACKSTOP_ROLE", account.ec2_backstop_role),
    ):
        if not value:
            raise SettingsError(f"{name} is not set; LABBOT_PROVIDER=ec2 needs it.")
    where = account.setting("LABBOT_EC2_CATALOG", "catalog")
    try:
        offer = load_offer(Path(account.ec2_catalog))
    except CatalogError as error:
        raise SettingsError(f"{where}: {error}") from error
    gaps = missing_images(offer)
    if gaps:
        raise SettingsError(
            f"{where}: no [[images]] entry for {'; '.join(gaps[:5])}"
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
    if "LABBOT_IDLE_CPU" in env:
        changes["idle_cpu"] = _read(
            "LABBOT_IDLE_CPU",
            env["LABBOT_IDLE_CPU"],
            read_percent,
            "a percentage above 0 and below 100 like 5%",
        )
    if "LABBOT_IDLE_NETWORK" in env:
        changes["idle_network"] = _read(
            "LABBOT_IDLE_NETWORK",
            env["LABBOT_IDLE_NETWORK"],
            read_per_hour,
            "an amount of traffic an hour like 10MB/h (B, KB, MB or GB)",
        )
    if "LABBOT_IDLE_RECLAIM" in env:
        changes["idle_reclaim"] = _off_or_duration("LABBOT_IDLE_RECLAIM", env)
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


def _read(name: str, text: str, read: Callable[[str], T], accepted: str) -> T:
    """`read(text)`, or one sentence naming the setting and what it accepts."""
    try:
        return read(text)
    except ValueError:
        raise SettingsError(f"{name} must be {accepted}, not '{text}'.") from None


def _off_or_duration(name: str, env: Mapping[str, str]) -> timedelta | None:
    """`off` (or empty) for never, else a duration like 24h."""
    if env[name].strip().lower() in ("", "off", "no", "0"):
        return None
    return _duration(env, name, timedelta(0))


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


def _niceness(text: str) -> int:
    """Digits only: `int()` alone would also take `+5` and `1_0`."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(text)
    value = int(digits)
    if not 0 <= value <= MAX_NICENESS:
        raise ValueError(text)
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env[name].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name} must be yes or no, not '{env[name]}'.")


def _money(env: Mapping[str, str], name: str) -> int:
    try:
        return read_dollars(env[name])
    except ValueError:
        raise SettingsError(
            f"{name} must be an amount in dollars like 25000 or 25000.00, not '{env[name]}'."
        ) from None


def _choice(env: Mapping[str, str], name: str, options: tuple[str, ...], default: str) -> str:
    value = env.get(name, default)
    if value not in options:
        raise SettingsError(f"{name} must be one of {', '.join(options)}, not '{value}'.")
    return value


def _ids(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.replace(" ", ",").split(",") if part.strip())


def _from_file(path: str | None, env: Mapping[str, str]) -> Settings:
    """LABBOT_CONFIG (bot.config_file): the policy, the foundation, the catalog, the donors.
    With [[donor]] tables, the environment's one-donor settings would say something else about
    the same money or account: they are refused rather than quietly ignored."""
    if not path:
        return Settings()
    config = read_config(Path(path))
    if config.donors:
        for name in ("LABBOT_PROVIDER", "LABBOT_MONTHLY_CREDIT"):
            if name in env:
                raise SettingsError(
                    f"{name} is for a lab without [[donor]] tables in LABBOT_CONFIG; set each "
                    "donor's provider and monthly_grant in its table instead."
                )
    policy = replace(Policy(), **config.policy, donor_list=tuple(t.rules() for t in config.donors))
    return Settings(
        policy=policy,
        catalog=config.catalog,
        donor_accounts=tuple(_account(table, env) for table in config.donors),
    )


def _account(table: DonorTable, env: Mapping[str, str]) -> Account:
    """A [[donor]] table's account, its secrets read from the variables the table names."""
    where = table.where()

    def secret(key: str) -> str | None:
        name = getattr(table, key)
        if name is None:
            return None
        if not env.get(name):
            raise SettingsError(f"{where} {key} names {name}, which is not set.")
        return env[name]

    own_catalog = table.provider == "simulated" and table.catalog
    return Account(
        donor=table.name,
        provider=table.provider,
        table=where,
        catalog=read_catalog(Path(table.catalog), f"{where} catalog") if own_catalog else None,
        packet_auth_token=secret("token_env"),
        packet_token_name=table.token_env or Account.packet_token_name,
        packet_project_id=table.project_id,
        packet_api_url=table.api_url or Account.packet_api_url,
        ec2_catalog=table.catalog if table.provider == "ec2" else None,
        ec2_backstop_role=table.backstop_role,
        aws_endpoint_url=table.endpoint_url,
        aws_profile=table.profile,
        aws_access_key_id=secret("access_key_env"),
        aws_secret_access_key=secret("secret_key_env"),
    )
