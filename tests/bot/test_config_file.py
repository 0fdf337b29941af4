"""LABBOT_CONFIG through its schema: [policy], [foundation], the catalog and [[donor]] tables,
every bad value one sentence naming the table, the key and what is accepted."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config_file import PolicyTable
from bot.settings import SettingsError, from_env
from commands.donors import FIRST_DONOR, Earmark
from commands.policy import Policy
from metal.ec2_catalog import EXAMPLE as EC2_EXAMPLE

DONOR = '[[donor]]\nname = "cloud-a"\nprovider = "simulated"\nmonthly_grant = 10000\n'


def settings_of(tmp_path: Path, text: str, **env: str):
    path = tmp_path / "labbot.toml"
    path.write_text(text)
    return from_env({"LABBOT_CONFIG": str(path), **env})


def refusal(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(SettingsError) as error:
        settings_of(tmp_path, text, **env)
    return str(error.value)


def one_sentence(message: str) -> bool:
    """One line ending in its only full stop (a raw validation error spans several lines)."""
    return "\n" not in message and message.endswith(".") and ". " not in message


def test_the_policy_table_is_checked_as_strictly_as_the_environment(tmp_path):
    # Before the schema, the first was a traceback and the second a string in the policy.
    assert refusal(tmp_path, '[policy]\nmonthly_credit_cents = "lots"\n') == (
        "LABBOT_CONFIG: [policy] monthly_credit_cents must be an amount in dollars like 25000, "
        "not 'lots'."
    )
    assert refusal(tmp_path, '[policy]\nmax_servers = "many"\n') == (
        "LABBOT_CONFIG: [policy] max_servers must be a whole number of at least 1, not 'many'."
    )


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[policy]\ngrace = 5\n", "[policy] grace must be a duration in quotes like"),
        ('[policy]\nmax_lease = "0s"\n', "[policy] max_lease must be a duration"),
        ('[policy]\nreminders = ["1h", "x"]\n', "reminders must be a list of durations"),
        ('[policy]\nallow_self_approval = "yes"\n', "allow_self_approval must be true or false"),
        ('[policy]\nreserved_share = "120%"\n', 'reserved_share must be a share like "20%"'),
        ("[policy]\ncredit_alerts = [0]\n", "credit_alerts must be a list of percentages"),
        ("[policy]\ndonor_list = []\n", "[policy] has no setting 'donor_list'"),
        ('[polcy]\ngrace = "1h"\n', "LABBOT_CONFIG has no table or setting 'polcy'"),
        ("policy = 3\n", "LABBOT_CONFIG: policy must be a table, [policy], not 3."),
        ('os = "debian_9"\n', "LABBOT_CONFIG: os must be a list of names in quotes"),
        ('[plans."x1.big"]\nname = "X"\n', '[plans."x1.big"] needs hourly: a price in dollars'),
        ('[plans."x1.big"]\nhourly = "cheap"\n', "hourly must be a price in dollars an hour"),
        ('[plans."x1.big"]\nhourly = 1\narch = "arm"\n', "arch must be x86_64 or aarch64"),
        ("[metros]\nams1 = 1\n", "[metros] ams1 must be a place's name in quotes, not 1."),
        ('[foundation]\nprojects = [{ name = "x", stars = 3 }]\n', "'stars' is not one of"),
    ],
)
def test_a_bad_value_in_a_table_is_one_sentence(tmp_path, text, said):
    message = refusal(tmp_path, text)
    assert said in message
    assert message.startswith("LABBOT_CONFIG") and one_sentence(message)


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ('provider = "aws"', "provider must be one of simulated, packet, ec2, not 'aws'"),
        ('monthly_grant = "lots"', "monthly_grant must be an amount in dollars"),
        ("grants = { 2027-13 = 5 }", "grants must be a table of months like { 2027-01 = 10000 }"),
        ('grants = { 2027-01 = "some" }', "grants must be a table of months"),
        ('ends = "soon"', "ends must be a date like 2027-06-30"),
        ("starts = 2027-02-01\nends = 2027-01-01", "ends (2027-01-01) before it starts"),
        ('classes = ["vip"]', "classes must be a list of classes from foundation, member, other"),
        ('architectures = ["arm"]', "architectures must be a list from x86_64, aarch64"),
        ('reserved_share = "lots"', 'reserved_share must be a share like "20%"'),
        ('earmarks = [{ share = "60%" }, { share = "50%" }]', "together they may keep at most"),
        ('earmarks = [{ share = "10%", colour = 1 }]', "'colour' is not one of its settings"),
        ('earmarks = [{ projects = ["x"] }]', "earmarks must be a list like"),
        ('colour = "red"', "[[donor]] \"cloud-a\" has no setting 'colour'; known: name,"),
        ('token_env = "PACKET_TOKEN"', "token_env is not a setting of a simulated donor"),
    ],
)
def test_a_bad_donor_table_is_one_sentence_naming_the_donor_and_the_key(tmp_path, table, said):
    key = table.split(" =")[0]
    kept = [line for line in DONOR.splitlines() if not line.startswith(f"{key} =")]
    message = refusal(tmp_path, "\n".join([*kept, table, ""]))
    assert said in message
    assert message.startswith('LABBOT_CONFIG: [[donor]] "cloud-a"') and one_sentence(message)


def test_what_a_donor_table_must_have(tmp_path):
    assert (
        refusal(tmp_path, '[[donor]]\nprovider = "packet"\nmonthly_grant = 1\n')
        == "LABBOT_CONFIG: [[donor]] number 1 needs name: a short name of lowercase letters, "
        'digits, - and _ like "cloud-arm".'
    )
    assert "needs provider: one of simulated" in refusal(
        tmp_path, '[[donor]]\nname = "a"\nmonthly_grant = 1\n'
    )
    assert "needs token_env for provider packet" in refusal(
        tmp_path, DONOR.replace("simulated", "packet")
    )
    ec2 = DONOR.replace("simulated", "ec2") + 'catalog = "ec2.toml"\nbackstop_role = "arn"\n'
    assert "needs access_key_env and secret_key_env together" in refusal(
        tmp_path, ec2 + 'access_key_env = "AWS_KEY_B"\n'
    )
    assert "is named twice" in refusal(tmp_path, DONOR + DONOR)
    assert "[[donor]] tables, one for each donor" in refusal(
        tmp_path, DONOR.replace("[[donor]]", "[donor]")
    )


def test_credentials_are_named_never_written_and_never_repeated(tmp_path):
    packet = DONOR.replace("simulated", "packet") + 'project_id = "p1"\n'
    secret = "pk-live-0123456789-abcdef"
    message = refusal(tmp_path, packet + f'token_env = "{secret}"\n')
    assert "token_env must be the name of an environment variable" in message
    assert secret not in message
    assert refusal(tmp_path, packet + 'token_env = "PACKET_TOKEN_A"\n') == (
        'LABBOT_CONFIG: [[donor]] "cloud-a" token_env names PACKET_TOKEN_A, which is not set.'
    )
    settings = settings_of(
        tmp_path, packet + 'token_env = "PACKET_TOKEN_A"\n', PACKET_TOKEN_A=secret
    )
    (account,) = settings.accounts()
    assert (account.donor, account.packet_auth_token, account.packet_project_id) == (
        "cloud-a",
        secret,
        "p1",
    )
    assert secret not in repr(settings)


def test_two_donors_with_their_terms_accounts_and_catalogs(tmp_path):
    (tmp_path / "arm.toml").write_text(
        '[plans."c2.arm"]\nhourly = 0.9\narch = "aarch64"\nmetros = ["ams1"]\n'
    )
    settings = settings_of(
        tmp_path,
        '[policy]\ngrace = "30m"\n'
        + DONOR
        + "grants = { 2027-01 = 2500.50 }\nends = 2027-07-01\n"
        + 'earmarks = [{ share = "25%", projects = ["CoreDNS"], classes = ["member"] }]\n'
        + '[[donor]]\nname = "arm"\nprovider = "simulated"\nmonthly_grant = "$5,000"\n'
        + 'catalog = "arm.toml"\narchitectures = ["aarch64"]\nclasses = ["foundation"]\n'
        + 'starts = "2026-12-15T12:00:00+01:00"\nreserved_share = "10%"\n',
    )
    first, arm = settings.policy.donors()
    assert (first.name, first.monthly_grant_cents, first.grant_cents("2027-01")) == (
        "cloud-a",
        1_000_000,
        250_050,
    )
    assert first.ends_at == datetime(2027, 7, 1, tzinfo=UTC)
    assert first.grant_cents("2027-07") == 0
    assert first.earmarks == (Earmark(2500, frozenset({"coredns"}), frozenset({"member"})),)
    assert (arm.architectures, arm.classes, arm.reserved_share) == (
        frozenset({"aarch64"}),
        frozenset({"foundation"}),
        1000,
    )
    assert arm.starts_at == datetime(2026, 12, 15, 11, tzinfo=UTC)
    assert settings.policy.grace == timedelta(minutes=30)
    assert [a.donor for a in settings.accounts()] == ["cloud-a", "arm"]
    assert settings.accounts()[0].catalog is None  # the lab's catalog
    assert settings.accounts()[1].catalog.plans["c2.arm"].arch == "aarch64"


def test_a_donors_catalog_file_is_checked_by_the_same_schema(tmp_path):
    (tmp_path / "bad.toml").write_text('[plans."c2.arm"]\nhourly = "cheap"\n')
    message = refusal(tmp_path, DONOR + 'catalog = "bad.toml"\n')
    assert message.startswith('LABBOT_CONFIG: [[donor]] "cloud-a" catalog: [plans."c2.arm"] hourly')


def test_the_environments_one_donor_and_the_donor_tables_do_not_mix(tmp_path):
    settings = from_env({"LABBOT_MONTHLY_CREDIT": "12000"})
    (donor,) = settings.policy.donors()
    assert (donor.name, donor.monthly_grant_cents) == (FIRST_DONOR, 1_200_000)
    (account,) = settings.accounts()
    assert (account.donor, account.provider) == (FIRST_DONOR, "simulated")
    for name in ("LABBOT_PROVIDER", "LABBOT_MONTHLY_CREDIT"):
        assert f"{name} is for a lab without [[donor]] tables" in refusal(
            tmp_path, DONOR, **{name: "packet" if name == "LABBOT_PROVIDER" else "1"}
        )
    assert "give each [[donor]] its monthly_grant" in refusal(
        tmp_path, "[policy]\nmonthly_credit_cents = 10\n" + DONOR
    )


def test_every_policy_rule_has_its_key_in_the_policy_table():
    # activity_url is where servers report, made of LABBOT_PUBLIC_URL (bot.settings).
    elsewhere = {"foundation_projects", "members", "rank", "donor_list", "capacity", "activity_url"}
    assert set(PolicyTable.model_fields) == {f.name for f in fields(Policy)} - elsewhere


def test_the_example_in_the_donors_page_is_a_configuration_labbot_reads(tmp_path):
    page = (Path(__file__).parents[2] / "docs" / "donors.md").read_text()
    example = page.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "ec2-arm.toml").write_text(EC2_EXAMPLE.read_text())
    (tmp_path / "community-plans.toml").write_text('[plans."c1.small.x86"]\nhourly = 0.3\n')
    secrets = {"PACKET_TOKEN_CLOUD_A": "t", "AWS_KEY_ID_ARM": "k", "AWS_SECRET_KEY_ARM": "s"}
    settings = settings_of(tmp_path, example, **secrets)
    assert [d.name for d in settings.policy.donors()] == ["cloud-a", "arm-credits", "community"]
    assert [a.provider for a in settings.accounts()] == ["packet", "ec2", "simulated"]


CAPACITY = """
[capacity."c1.small.x86"]
ams1 = 20
ewr1 = 0

[[donor]]
name = "cloud-a"
provider = "simulated"
monthly_grant = 10000

[donor.capacity."c1.large.arm"]
ams1 = 6
"""


def test_capacity_per_plan_and_metro_for_the_lab_and_for_a_donor(tmp_path):
    policy = settings_of(tmp_path, CAPACITY).policy
    assert policy.capacity == (("c1.small.x86", "ams1", 20), ("c1.small.x86", "ewr1", 0))
    assert policy.donor("cloud-a").capacity == (("c1.large.arm", "ams1", 6),)
    assert settings_of(tmp_path, "").policy.capacity == ()  # no entry: no limit


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            '[capacity."c1.small.x86"]\nams1 = -1\n',
            'LABBOT_CONFIG: [capacity."c1.small.x86"] ams1 must be a whole number of servers, '
            "0 or more, not -1.",
        ),
        (
            '[capacity."c1.small.x86"]\nams1 = "ten"\n',
            'LABBOT_CONFIG: [capacity."c1.small.x86"] ams1 must be a whole number of servers, '
            "0 or more, not 'ten'.",
        ),
        (
            "[capacity]\nams1 = 3\n",
            'LABBOT_CONFIG: capacity must be tables of plans like [capacity."c1.small.x86"] with '
            "ams1 = 20, not 3.",
        ),
        (
            DONOR + '[donor.capacity."c1.large.arm"]\nams1 = 2.5\n',
            'LABBOT_CONFIG: [[donor]] "cloud-a" capacity."c1.large.arm" ams1 must be a whole '
            "number of servers, 0 or more, not 2.5.",
        ),
    ],
)
def test_a_bad_capacity_is_one_sentence_naming_table_key_and_what_is_accepted(tmp_path, text, said):
    message = refusal(tmp_path, text)
    assert message == said
    assert one_sentence(message)
