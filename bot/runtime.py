"""Wiring: from Settings to a ready Lab (database migrated, each donor's provider chosen and
verified, provider and notifier calls counted for /metrics)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from bot.metrics import CountedNotifier, CountedProvider
from bot.settings import Account, Settings, SettingsError, require_ec2, require_packet
from commands.donor_alerts import unconfigured
from commands.lab import Lab
from commands.notices import ADMIN, Kind, Notifier, enqueue
from commands.policy import default_os_problem
from metal.forge import Forge
from metal.forge_http import HttpForge
from metal.provider import Catalog, Clock, Provider, ProviderError, utcnow
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade

if TYPE_CHECKING:
    import boto3

log = logging.getLogger(__name__)


def open_database(settings: Settings) -> Database:
    db = Database(settings.database_url)
    upgrade(db, grace=settings.policy.grace)
    return db


def make_provider(
    account: Account, settings: Settings, db: Database, clock: Clock = utcnow
) -> Provider:
    """A donor's provider, not yet asked anything (build_lab verifies it)."""
    if account.provider == "packet":
        require_packet(account)
        from metal.packet import PacketProvider

        return PacketProvider(
            account.packet_auth_token,
            account.packet_project_id,
            account.packet_api_url,
            timeout=settings.packet_timeout,
            token_name=account.packet_token_name,
        )
    if account.provider == "ec2":
        from metal.ec2 import Ec2Provider

        return Ec2Provider(
            require_ec2(account),
            account.ec2_backstop_role,
            timeout=settings.ec2_timeout,
            retry_mode=settings.ec2_retry_mode,
            max_attempts=settings.ec2_max_attempts,
            endpoint_url=account.aws_endpoint_url,
            session=_aws_session(account),
        )
    return SimulatedProvider(
        db,
        clock=clock,
        provision_seconds=settings.simulated_provision.total_seconds(),
        catalog=account.catalog or settings.catalog,
    )


def _aws_session(account: Account) -> boto3.session.Session:
    """A donor's own keys or profile; none named: boto3's standard chain (AWS_PROFILE too).
    Imported here, as metal.ec2 is, so that a lab without EC2 never loads boto3."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        return boto3.session.Session(
            aws_access_key_id=account.aws_access_key_id,
            aws_secret_access_key=account.aws_secret_access_key,
            profile_name=account.aws_profile,
        )
    except ProfileNotFound as error:
        raise SettingsError(f"{account.setting('AWS_PROFILE', 'profile')}: {error}.") from error


def make_forge(settings: Settings) -> Forge:
    """The forge client: GitHub and GitLab, or wherever GITHUB_API_URL/GITLAB_API_URL point."""
    return HttpForge(
        github_url=settings.github_api_url,
        gitlab_url=settings.gitlab_api_url,
        github_token=settings.github_token,
        gitlab_token=settings.gitlab_token,
        timeout=(min(3.05, settings.forge_timeout), settings.forge_timeout),
    )


def _ready(provider: Provider) -> Catalog | str:
    """The provider's catalog, read now (a form must open within the trigger's seconds, so not
    on the first request form), once its credentials are proven; else why not, in a sentence
    (the provider's own names the setting)."""
    try:
        provider.verify()
    except ProviderError as error:
        return str(error)
    try:
        return provider.catalog()
    except ProviderError as error:
        return f"the provider's plan catalog could not be read: {error}"


def build_lab(
    settings: Settings,
    notifier: Notifier | None,
    *,
    clock: Clock = utcnow,
    db: Database | None = None,
) -> Lab:
    """The Lab, one provider per donor. A donor whose provider refuses at start-up does not
    stop the others': the lab starts, its admins are told which donor is failing (its leases
    wait for it, the sweep retrying), unless no donor's provider answers at all."""
    db = db or open_database(settings)
    _refuse_removed_donors(db, settings)
    accounts = settings.accounts()
    providers: dict[str, Provider] = {
        a.donor: CountedProvider(make_provider(a, settings, db, clock)) for a in accounts
    }
    answers = {donor: _ready(provider) for donor, provider in providers.items()}
    catalogs = [answer for answer in answers.values() if isinstance(answer, Catalog)]
    failing = {donor: answer for donor, answer in answers.items() if isinstance(answer, str)}
    if not catalogs:
        raise SettingsError(
            "; ".join(failing.values())
            if len(failing) == 1
            else "no donor's provider answered: "
            + "; ".join(f"{donor}: {why}" for donor, why in failing.items())
        )
    _tell_failing(db, failing, clock())
    catalog = catalogs[0]
    problem = default_os_problem(settings.policy, catalog)
    if problem:
        raise SettingsError(f"LABBOT_CONFIG: [policy] {problem}.")
    counted = None if notifier is None else CountedNotifier(notifier)
    first = providers[accounts[0].donor]
    return Lab(
        db,
        first,
        counted,
        settings.policy,
        settings.roles,
        catalog,
        make_forge(settings),
        providers=providers,
    )


def _refuse_removed_donors(db: Database, settings: Settings) -> None:
    """A donor taken out of the configuration while it pays for leases would leave them
    without an account to delete their servers with: say which, and stop."""
    with db.read() as session:
        stranded = unconfigured(session, [donor.name for donor in settings.policy.donors()])
    if stranded:
        named = "; ".join(
            f"{donor} pays for #{', #'.join(map(str, ids[:10]))}"
            + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            for donor, ids in stranded.items()
        )
        raise SettingsError(
            f"LABBOT_CONFIG names no donor {', '.join(stranded)}, but leases still need it "
            f"({named}); put its [[donor]] table back until they end."
        )


def _tell_failing(db: Database, failing: dict[str, str], now: datetime) -> None:
    """The admins told which donor's provider refused at start-up (once an hour however many
    replicas start), and the log."""
    if not failing:
        return
    with db.write() as session:
        for donor, why in failing.items():
            log.warning("donor %s's provider is failing at start-up: %s", donor, why)
            enqueue(
                session,
                Kind.ADMIN_ALERT,
                ADMIN,
                f"Donor {donor}'s provider failed at start-up: {why}. Its leases wait until "
                "it answers; the other donors' go on.",
                now,
                alert="donor-failing",
                donor=donor,
                hour=f"{now:%Y-%m-%dT%H}",
            )
