"""Wiring: from Settings to a ready Lab (database migrated, provider chosen and verified, its
provider and notifier calls counted for /metrics)."""

from __future__ import annotations

from bot.metrics import CountedNotifier, CountedProvider
from bot.settings import Settings, SettingsError, require_ec2, require_packet
from commands.lab import Lab
from commands.notices import Notifier
from commands.policy import default_os_problem
from metal.forge import Forge
from metal.forge_http import HttpForge
from metal.provider import Clock, Provider, ProviderError, utcnow
from metal.simulated import SimulatedProvider
from storage.db import Database
from storage.schema import upgrade


def open_database(settings: Settings) -> Database:
    db = Database(settings.database_url)
    upgrade(db, grace=settings.policy.grace)
    return db


def make_provider(settings: Settings, db: Database, clock: Clock = utcnow) -> Provider:
    if settings.provider == "packet":
        require_packet(settings)
        from metal.packet import PacketProvider

        provider = PacketProvider(
            settings.packet_auth_token,
            settings.packet_project_id,
            settings.packet_api_url,
            timeout=settings.packet_timeout,
        )
        return _verified(provider)
    if settings.provider == "ec2":
        from metal.ec2 import Ec2Provider

        provider = Ec2Provider(
            require_ec2(settings),
            settings.ec2_backstop_role,
            timeout=settings.ec2_timeout,
            retry_mode=settings.ec2_retry_mode,
            max_attempts=settings.ec2_max_attempts,
            endpoint_url=settings.aws_endpoint_url,
        )
        return _verified(provider)
    return SimulatedProvider(
        db,
        clock=clock,
        provision_seconds=settings.simulated_provision.total_seconds(),
        catalog=settings.catalog,
    )


def make_forge(settings: Settings) -> Forge:
    """The forge client: GitHub and GitLab, or wherever GITHUB_API_URL/GITLAB_API_URL point."""
    return HttpForge(
        github_url=settings.github_api_url,
        gitlab_url=settings.gitlab_api_url,
        github_token=settings.github_token,
        gitlab_token=settings.gitlab_token,
        timeout=(min(3.05, settings.forge_timeout), settings.forge_timeout),
    )


def _verified(provider: Provider) -> Provider:
    """A refused credential stops start-up with the provider's sentence naming the setting."""
    try:
        provider.verify()
    except ProviderError as error:
        raise SettingsError(str(error)) from error
    return provider


def build_lab(
    settings: Settings,
    notifier: Notifier | None,
    *,
    clock: Clock = utcnow,
    db: Database | None = None,
) -> Lab:
    db = db or open_database(settings)
    provider = CountedProvider(make_provider(settings, db, clock))
    # Read now, not on the first request form: a form must open within the trigger's seconds.
    try:
        catalog = provider.catalog()
    except ProviderError as error:
        raise SettingsError(f"the provider's plan catalog could not be read: {error}") from error
    problem = default_os_problem(settings.policy, catalog)
    if problem:
        raise SettingsError(f"LABBOT_CONFIG: [policy] {problem}.")
    counted = None if notifier is None else CountedNotifier(notifier)
    return Lab(
        db, provider, counted, settings.policy, settings.roles, catalog, make_forge(settings)
    )
