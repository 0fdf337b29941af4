"""Well-formed public SSH keys for the demo and the tests: an ssh-ed25519 line whose 32-byte
point is derived from a seed. Nobody holds a private key for them, which is the point."""

from __future__ import annotations

import base64
import hashlib


def public_key(seed: str, comment: str = "") -> str:
    name = b"ssh-ed25519"
    point = hashlib.sha256(seed.encode()).digest()
    blob = len(name).to_bytes(4, "big") + name + len(point).to_bytes(4, "big") + point
    return " ".join(filter(None, ("ssh-ed25519", base64.b64encode(blob).decode(), comment)))
