"""Rules: public SSH keys: read one line of text as a key, or say why it is not one.

Pure, so hypothesis can throw any string at it. A key is accepted only when its base64 blob
decodes and names the same type as the line does (what `ssh-keygen -l` checks first), so a
truncated paste is caught here rather than by a server nobody can log into. Anything that looks
like a private key is refused with its own sentence, and nothing of it is kept or repeated.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

MAX_KEY_CHARS = 2000  # an RSA 8192 public key line is about 1,400 characters
MAX_COMMENT_CHARS = 100

KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-dss",
)

# PEM and OpenSSH headers (RSA, DSA, EC, PKCS#8, encrypted PKCS#8, OpenSSH), PuTTY's .ppk,
# the ssh.com/SECSH format, and an OpenSSH private key pasted without its armour lines
# (base64 of "openssh-key-v1\0").
_PRIVATE = re.compile(
    r"PRIVATE KEY|PuTTY-User-Key-File|Private-Lines\s*:|b3BlbnNzaC1rZXktdjE",
    re.IGNORECASE,
)
_COMMENT = re.compile(r"[\x21-\x7e][\x20-\x7e]*")

# The rotate advice comes first: a form shows only the first 150 characters under the field.
PRIVATE_KEY_REFUSAL = (
    "That is a private SSH key: treat it as exposed and rotate it (it went through Slack; "
    "labbot kept none of it): make a new pair with `ssh-keygen -t ed25519`, remove the old "
    "public key wherever it is trusted, and give labbot only the one line of the `.pub` file, "
    "like `ssh-ed25519 AAAA... you@host`."
)
EXAMPLE = "one line from your `.pub` file, like `ssh-ed25519 AAAA... you@host`"


@dataclass(frozen=True)
class PublicKey:
    kind: str
    blob: str
    comment: str = ""

    @property
    def line(self) -> str:
        """The key as stored and as sent to the provider: type, blob, comment."""
        return " ".join(filter(None, (self.kind, self.blob, self.comment)))

    @property
    def fingerprint(self) -> str:
        """SHA256 fingerprint exactly as `ssh-keygen -lf` prints it."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def label(self) -> str:
        """`SHA256:... (ed25519, you@host)`: what people are shown, never the whole key."""
        short = self.kind.removeprefix("ssh-").removesuffix("@openssh.com")
        return f"{self.fingerprint} ({short}{', ' + self.comment if self.comment else ''})"


@dataclass(frozen=True)
class KeyProblem:
    """Why a text is not a public key; `private` is True when it was a private key."""

    sentence: str
    private: bool = False


def looks_private(text: str) -> bool:
    return _PRIVATE.search(text) is not None


def read_key(text: str) -> PublicKey | KeyProblem:
    if looks_private(text):
        return KeyProblem(PRIVATE_KEY_REFUSAL, private=True)
    line = text.strip()
    if len(line) > MAX_KEY_CHARS:
        return KeyProblem(
            f"That key is {len(line):,} characters; the limit is {MAX_KEY_CHARS:,}. Give {EXAMPLE}."
        )
    if "\n" in line or "\r" in line:
        return KeyProblem(f"A public key is a single line; give {EXAMPLE}.")
    kind, _, rest = line.partition(" ")
    blob, _, comment = rest.strip().partition(" ")
    comment = comment.strip()
    if kind not in KEY_TYPES:
        return KeyProblem(
            f"That is not a public SSH key (it should start with ssh-ed25519, ssh-rsa or "
            f"ecdsa-sha2-nistp256); give {EXAMPLE}."
        )
    if _embedded_type(blob) != kind:
        return KeyProblem(
            f"That {kind} key is damaged (its base64 part does not decode to a {kind} key; "
            f"was it cut short?); give {EXAMPLE}."
        )
    if comment and (len(comment) > MAX_COMMENT_CHARS or not _COMMENT.fullmatch(comment)):
        return KeyProblem(
            f"The comment after the key must be printable text of at most {MAX_COMMENT_CHARS} "
            f"characters, like `you@host`; give {EXAMPLE}."
        )
    return PublicKey(kind, blob, comment)


def _embedded_type(blob: str) -> str | None:
    """The type named at the start of the decoded blob (a uint32 length, then the name)."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 4:
        return None
    size = int.from_bytes(raw[:4], "big")
    name = raw[4 : 4 + size]
    if size > 64 or len(name) != size or len(raw) <= 4 + size:
        return None
    return name.decode("ascii", errors="replace")
