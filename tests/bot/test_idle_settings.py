"""The idle settings: their defaults, what they accept, and one sentence for a bad value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.settings import SettingsError, from_env


def test_defaults_ask_after_six_quiet_hours_and_never_reclaim_early():
    policy = from_env({}).policy
    assert (policy.idle_cpu, policy.idle_network) == (0.05, 10_000_000)
    assert (policy.idle_after, policy.idle_snooze, policy.idle_escalate) == (
        timedelta(hours=6),
        timedelta(hours=24),
        timedelta(hours=12),
    )
    assert policy.idle_reclaim is None


def test_overrides_from_the_environment_and_the_configuration_file(tmp_path):
    policy = from_env(
        {
            "LABBOT_IDLE_CPU": "2.5%",
            "LABBOT_IDLE_NETWORK": "500KB/h",
            "LABBOT_IDLE_AFTER": "9h",
            "LABBOT_IDLE_RECLAIM": "36h",
        }
    ).policy
    assert (policy.idle_cpu, policy.idle_network) == (0.025, 500_000)
    assert (policy.idle_after, policy.idle_reclaim) == (timedelta(hours=9), timedelta(hours=36))
    assert from_env({"LABBOT_IDLE_RECLAIM": "off"}).policy.idle_reclaim is None
    config = tmp_path / "lab.toml"
    config.write_text(
        '[policy]\nidle_reclaim = "2d"\nidle_escalate = "4h"\nidle_cpu = "10%"\n'
        'idle_network = "1GB/h"\n'
    )
    policy = from_env({"LABBOT_CONFIG": str(config)}).policy
    assert (policy.idle_reclaim, policy.idle_escalate) == (timedelta(days=2), timedelta(hours=4))
    assert (policy.idle_cpu, policy.idle_network) == (0.1, 10**9)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LABBOT_IDLE_CPU": "lots"}, "LABBOT_IDLE_CPU must be a percentage above 0 and below 100"),
        ({"LABBOT_IDLE_CPU": "100%"}, "LABBOT_IDLE_CPU must be a percentage above 0 and below 100"),
        ({"LABBOT_IDLE_NETWORK": "10TB"}, "LABBOT_IDLE_NETWORK must be an amount of traffic"),
        ({"LABBOT_IDLE_NETWORK": "0MB"}, "LABBOT_IDLE_NETWORK must be an amount of traffic"),
        ({"LABBOT_IDLE_AFTER": "0s"}, "LABBOT_IDLE_AFTER: '0s' is zero"),
        ({"LABBOT_IDLE_SNOOZE": "soon"}, "LABBOT_IDLE_SNOOZE: 'soon' is not a duration"),
        ({"LABBOT_IDLE_ESCALATE": "-1h"}, "LABBOT_IDLE_ESCALATE: "),
        ({"LABBOT_IDLE_RECLAIM": "later"}, "LABBOT_IDLE_RECLAIM: 'later' is not a duration"),
    ],
)
def test_a_bad_idle_setting_stops_start_up_with_one_sentence(env, message):
    with pytest.raises(SettingsError) as refused:
        from_env(env)
    said = str(refused.value)
    assert said.startswith(message) and said.count(". ") == 0 and said.endswith(".")
