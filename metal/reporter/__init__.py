"""The activity reporter labbot puts on every server it creates (issue 23, docs/idle.md).

A server's user data, on every provider, installs a small POSIX shell script and a systemd
timer that runs it every 5 minutes: it reads /proc and `who` and POSTs four numbers (load, CPU
busy share, network bytes, sessions) to labbot's `/activity` with the server's own token. The
files live beside this module as the server gets them, so the script can be run and tested as
it is. The installer writes the token into a file only root can read, from which systemd hands
it to the script; the script gives it to curl on its standard input, never its command line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from importlib.resources import files

SCRIPT = "report-activity.sh"
UNITS = ("labbot-activity.service", "labbot-activity.timer")
TIMER = "labbot-activity.timer"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
_URL = re.compile(r"https?://[^\s'\"\\$`]+")
_END = "END_OF_LABBOT_FILE"  # the here-documents' delimiter: no line of the files is this
# EC2's instance metadata (IMDSv2): the instance's place in its launch.
_LAUNCH_INDEX = (
    "imds=http://169.254.169.254/latest\n"
    'session=$(curl -fsS -m 5 -X PUT "$imds/api/token" \\\n'
    '    -H "X-aws-ec2-metadata-token-ttl-seconds: 60")\n'
    'curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $session" "$imds/meta-data/ami-launch-index"'
)


@dataclass(frozen=True)
class Reporting:
    """Where a server reports (labbot's `/activity`) and with which token: what a DeviceSpec
    carries for the provider to put in the server's user data."""

    url: str
    token: str = field(repr=False)


def usable_url(url: str) -> bool:
    """Whether `url` can be where servers report: http(s), nothing a shell would read."""
    return bool(_URL.fullmatch(url))


def read(name: str) -> str:
    return files(__package__).joinpath(name).read_text()


def user_data(url: str, tokens: Sequence[str]) -> str:
    """The shell script, run once by cloud-init at first boot, that installs the reporter for
    `url` with the server's token. One launch that makes several servers with one user data
    (EC2's RunInstances) gives the tokens in launch order, and each server takes the one at its
    own place (its `ami-launch-index`; `LABBOT_LAUNCH_INDEX` for tests). `LABBOT_ROOT` puts the
    files under another root, for tests; without systemd (a container) nothing is started."""
    if not _URL.fullmatch(url) or not tokens or not all(map(_TOKEN.fullmatch, tokens)):
        raise ValueError("an activity URL or token that cannot go into a shell script as is")
    parts = [
        "#!/bin/sh",
        "# labbot's activity reporter (docs/idle.md): every 5 minutes this server's load, CPU,",
        "# network bytes and sessions go to labbot. Turn it off on this server with:",
        f"#   systemctl disable --now {TIMER}",
        "set -eu",
        'root="${LABBOT_ROOT:-}"',
        f"set -- {' '.join(tokens)}",
        _pick_own(len(tokens)),
        'mkdir -p "$root/etc/labbot" "$root/usr/local/lib/labbot" "$root/etc/systemd/system"',
        "umask 077",
        f'printf "LABBOT_ACTIVITY_URL=%s\\nLABBOT_ACTIVITY_TOKEN=%s\\n" "{url}" "$1" '
        '>"$root/etc/labbot/activity.env"',
        "umask 022",
        _file("$root/usr/local/lib/labbot/report-activity", read(SCRIPT)),
        'chmod 755 "$root/usr/local/lib/labbot/report-activity"',
        *(_file(f"$root/etc/systemd/system/{unit}", read(unit)) for unit in UNITS),
        "if command -v systemctl >/dev/null 2>&1; then",
        "    systemctl daemon-reload",
        f"    systemctl enable --now {TIMER}",
        "fi",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _pick_own(count: int) -> str:
    """Shift the tokens before this server's own to the front (nothing to do for one)."""
    if count == 1:
        return ""
    return (
        'index="${LABBOT_LAUNCH_INDEX:-$(\n' + _LAUNCH_INDEX + "\n)}\n"
        'case "$index" in "" | *[!0-9]*) echo "labbot: no launch index" >&2; exit 1 ;; esac\n'
        f'[ "$index" -lt {count} ] || {{ echo "labbot: launch index $index" >&2; exit 1; }}\n'
        'shift "$index"'
    )


def _file(path: str, text: str) -> str:
    if any(line == _END for line in text.splitlines()):
        raise ValueError(f"{path} holds the here-document's delimiter")
    return f"cat >\"{path}\" <<'{_END}'\n{text.rstrip(chr(10))}\n{_END}"


def combined(*scripts: str) -> str:
    """Several user-data scripts as one, in cloud-init's multipart form: each runs in turn."""
    parts = MIMEMultipart()
    for script in scripts:
        parts.attach(MIMEText(script, "x-shellscript"))
    return parts.as_string()
