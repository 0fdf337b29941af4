"""The files that carry a lease's servers, read back as their tools would read them."""

from __future__ import annotations

import csv
import io

from commands.handover import files_notice
from commands.serverfiles import server_files

SERVERS = [
    {"hostname": "web-12-1", "ips": "147.75.1.2 2604:1380::2", "metro": "ams1", "plan": "p1"},
    {"hostname": "web-12-2", "ips": "", "metro": "ams1", "plan": "p1", "state": "provisioning"},
]


def test_the_csv_has_every_server_with_its_addresses() -> None:
    csv_file, _, _ = server_files(12, "ubuntu", SERVERS)
    assert csv_file.filename == "lease-12-servers.csv"
    rows = list(csv.DictReader(io.StringIO(csv_file.content)))
    assert rows[0] == {
        "hostname": "web-12-1",
        "address": "147.75.1.2",
        "addresses": "147.75.1.2 2604:1380::2",
        "metro": "ams1",
        "plan": "p1",
        "state": "",
        "login": "ubuntu",
    }
    assert rows[1]["address"] == "" and rows[1]["state"] == "provisioning"


def test_a_server_without_an_address_is_a_comment_in_the_ssh_config_and_inventory() -> None:
    _, ssh, inventory = server_files(12, "ubuntu", SERVERS)
    assert "Host web-12-1\n    HostName 147.75.1.2\n    User ubuntu\n" in ssh.content
    assert "# web-12-2: no address yet" in ssh.content
    assert "Host web-12-2" not in ssh.content
    assert "[lease_12]\nweb-12-1 ansible_host=147.75.1.2\n# web-12-2: no address yet" in (
        inventory.content
    )
    assert inventory.content.endswith("[lease_12:vars]\nansible_user=ubuntu\n")


def test_the_notice_says_what_the_files_replace() -> None:
    draft = files_notice(12, "root", SERVERS, "user:U1", " They replace the files sent earlier.")
    assert draft.text.startswith("Every server of lease #12 (2), in three files:")
    assert "then `ssh web-12-1`" in draft.text
    assert draft.text.endswith("They replace the files sent earlier.")
    assert draft.data == {"login": "root", "servers": SERVERS}
