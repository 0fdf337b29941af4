"""Settings from the environment: defaults, overrides, and a sentence naming a bad setting."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bot.settings import SettingsError, from_env
from commands.policy import Policy


def test_defaults():
    settings = from_env({})
    assert settings.provider == "simulated"
    # the simulated provider's servers take a minute: provisioning is polled every 15 s
    assert settings.policy == replace(Policy(), provision_poll=timedelta(seconds=15))
    assert settings.database_url == "sqlite:///labbot.db"
    assert "c1.small.x86" in settings.catalog.plans


def test_overrides():
    settings = from_env(
        {
            "DATABASE_URL": "postgres://u@h/db",
            "LABBOT_GRACE": "2h",
            "LABBOT_MAX_SERVERS": "20",
            "LABBOT_MONTHLY_CREDIT": "$12,500.50",
            "LABBOT_PROJECT_CAP": "1000",
            "LABBOT_REMINDERS": "1h, 2d",
            "LABBOT_REVIEWERS": "U1, U2 U3",
            "LABBOT_ADMINS": "U9",
            "PACKET_AUTH_TOKEN": "secret-token",
        }
    )
    policy = settings.policy
    assert policy.grace == timedelta(hours=2) and policy.max_servers == 20
    assert policy.monthly_credit_cents == 1_250_050
    assert policy.project_cap_cents == 100_000
    assert policy.reminders == (timedelta(days=2), timedelta(hours=1))
    assert settings.roles.reviewers == frozenset({"U1", "U2", "U3"})
    assert settings.roles.is_admin("U9")
    assert settings.provider == "packet"
    assert "secret-token" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABBOT_GRACE": "soon"}, "LABBOT_GRACE: 'soon' is not a duration; write it like"),
        ({"LABBOT_MAX_SERVERS": "0"}, "LABBOT_MAX_SERVERS must be a whole number of at least 1"),
        ({"LABBOT_MAX_SERVERS": "ten"}, "LABBOT_MAX_SERVERS must be a whole number"),
        ({"LABBOT_MONTHLY_CREDIT": "lots"}, "LABBOT_MONTHLY_CREDIT must be an amount in dollars"),
        ({"LABBOT_MONTHLY_CREDIT": "-5"}, "LABBOT_MONTHLY_CREDIT must be an amount in dollars"),
        ({"LABBOT_PROVIDER": "aws"}, "LABBOT_PROVIDER must be one of simulated, packet"),
        ({"LABBOT_REMINDERS": "1h,x"}, "LABBOT_REMINDERS: 'x' is not a duration"),
        ({"PORT": "http"}, "PORT must be a whole number"),
        ({"LABBOT_WORKER_NICENESS": "20"}, "LABBOT_WORKER_NICENESS must be a whole number from 0"),
        ({"LABBOT_WORKER_NICENESS": "-5"}, "LABBOT_WORKER_NICENESS must be a whole number from 0"),
        ({"LABBOT_WORKER_NICENESS": "1_0"}, "LABBOT_WORKER_NICENESS must be a whole number from 0"),
        ({"LABBOT_WORKER_NICENESS": "+5"}, "LABBOT_WORKER_NICENESS must be a whole number from 0"),
        (
            {"LABBOT_MIN_LEASE": "3d", "LABBOT_MAX_LEASE": "1d"},
            "LABBOT_MIN_LEASE is longer than LABBOT_MAX_LEASE",
        ),
        ({"LABBOT_MAX_LEASE": "60d"}, "LABBOT_MAX_LEASE is longer than LABBOT_MAX_TOTAL"),
        ({"LABBOT_CONFIG": "/no/such/file.toml"}, "LABBOT_CONFIG:"),
    ],
)
def test_a_bad_value_stops_with_a_sentence_naming_the_setting(env, message):
    with pytest.raises(SettingsError) as error:
        from_env(env)
    assert message in str(error.value)


def test_a_config_file_sets_policy_and_catalog(tmp_path):
    path = tmp_path / "labbot.toml"
    path.write_text(
        'os = ["debian_9"]\n'
        "[policy]\n"
        'grace = "30m"\n'
        "monthly_credit_cents = 1000\n"
        "max_servers = 7\n"
        '[plans."c1.small.x86"]\nhourly = 0.5\n'
    )
    settings = from_env({"LABBOT_CONFIG": str(path), "LABBOT_MAX_SERVERS": "9"})
    assert settings.policy.grace == timedelta(minutes=30)
    assert settings.policy.monthly_credit_cents == 100_000
    assert settings.policy.max_servers == 9  # the environment wins
    assert settings.catalog.plans["c1.small.x86"].hourly_cents == 50
    path.write_text("[policy]\nno_such_thing = 1\n")
    with pytest.raises(SettingsError, match="\\[policy\\] has no setting 'no_such_thing'"):
        from_env({"LABBOT_CONFIG": str(path)})


def test_forge_settings_point_the_client_elsewhere_and_keep_the_token_out_of_sight():
    from bot.runtime import make_forge

    settings = from_env(
        {
            "GITHUB_API_URL": "http://127.0.0.1:1",
            "GITLAB_API_URL": "http://127.0.0.1:2/api/v4",
            "GITHUB_TOKEN": "ghp_secret",
            "LABBOT_FORGE_TIMEOUT": "2s",
        }
    )
    forge = make_forge(settings)
    assert (forge.github_url, forge.gitlab_url) == (
        "http://127.0.0.1:1",
        "http://127.0.0.1:2/api/v4",
    )
    assert forge.github_token == "ghp_secret" and forge.timeout == (2.0, 2.0)
    assert "ghp_secret" not in repr(settings) + repr(forge)
    assert from_env({}).github_api_url == "https://api.github.com"


@pytest.mark.parametrize("value", ["120%", "-1%", "lots"])
def test_a_reserved_share_outside_0_to_100_percent_stops_start_up(value):
    with pytest.raises(SettingsError, match=r"LABBOT_RESERVED_SHARE: .* from 0% to 100%"):
        from_env({"LABBOT_RESERVED_SHARE": value})


def test_the_process_settings(tmp_path):
    config = tmp_path / "lab.toml"
    config.write_text(
        '[foundation]\nprojects = [{ name = "CoreDNS", maturity = "graduated" }]\n'
        'members = ["Acme"]\nrank = ["member", "foundation", "other"]\n'
        '[policy]\nreserved_share = "12.5%"\n'
    )
    settings = from_env({"LABBOT_CONFIG": str(config), "LABBOT_WRITEUP_AFTER": "7d"})
    policy = settings.policy
    assert policy.foundation_projects == (("coredns", "graduated"),)
    assert (policy.members, policy.rank) == (("Acme",), ("member", "foundation", "other"))
    assert (policy.reserved_share, policy.writeup_after) == (1250, timedelta(days=7))
    assert from_env({"LABBOT_RESERVED_SHARE": "0%"}).policy.reserved_share == 0
    assert (
        settings.worker_niceness,
        from_env({"LABBOT_WORKER_NICENESS": "0"}).worker_niceness,
    ) == (
        10,
        0,
    )


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('projects = ["coredns"]', "projects must be a list like"),
        ("members = [1]", "members must be a list of names"),
        ('rank = ["other"]', "rank must be all of foundation, member, other"),
        ("sponsors = []", "has no setting 'sponsors'"),
    ],
)
def test_a_bad_foundation_table_says_what_is_accepted(tmp_path, table, said):
    config = tmp_path / "lab.toml"
    config.write_text(f"[foundation]\n{table}\n")
    with pytest.raises(SettingsError, match=said):
        from_env({"LABBOT_CONFIG": str(config)})


def test_a_grace_of_nothing_is_a_lab_policy(tmp_path):
    assert from_env({"LABBOT_GRACE": "0s"}).policy.grace == timedelta(0)
    config = tmp_path / "labbot.toml"
    config.write_text('[policy]\ngrace = "0s"\n')
    assert from_env({"LABBOT_CONFIG": str(config)}).policy.grace == timedelta(0)
    with pytest.raises(SettingsError, match="LABBOT_MAX_LEASE: '0s' is zero"):
        from_env({"LABBOT_MAX_LEASE": "0s"})


def test_provisioning_is_polled_at_the_providers_pace_or_as_set():
    assert from_env({"LABBOT_SIMULATED_PROVISION": "20s"}).policy.provision_poll == timedelta(
        seconds=5
    )
    assert from_env({"LABBOT_SIMULATED_PROVISION": "2s"}).policy.provision_poll == timedelta(
        seconds=1
    )
    assert from_env({"LABBOT_PROVISION_POLL": "10s"}).policy.provision_poll == timedelta(seconds=10)
    packet = from_env({"PACKET_AUTH_TOKEN": "t", "PACKET_PROJECT_ID": "p"})
    assert packet.policy.provision_poll == timedelta(seconds=30)


def test_the_health_check_follows_a_long_sweep_interval_unless_told() -> None:
    assert from_env({}).health_sweep_age == timedelta(minutes=10)
    assert from_env({"LABBOT_SWEEP_INTERVAL": "1h"}).health_sweep_age == timedelta(hours=3)
    told = {"LABBOT_SWEEP_INTERVAL": "1h", "LABBOT_HEALTH_SWEEP_AGE": "90m"}
    assert from_env(told).health_sweep_age == timedelta(minutes=90)
    with pytest.raises(SettingsError, match="LABBOT_HEALTH_SWEEP_AGE must be longer"):
        from_env({"LABBOT_SWEEP_INTERVAL": "1h", "LABBOT_HEALTH_SWEEP_AGE": "30m"})
