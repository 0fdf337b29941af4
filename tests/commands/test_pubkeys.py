"""Reading public SSH keys: real keys of every type are read and fingerprinted as ssh-keygen
does; anything else, of any shape, gets a sentence; private keys get the rotate sentence and
nothing of them is repeated."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa
from hypothesis import example, given
from hypothesis import strategies as st

from commands.pubkeys import (
    KEY_TYPES,
    MAX_KEY_CHARS,
    PRIVATE_KEY_REFUSAL,
    KeyProblem,
    PublicKey,
    read_key,
)

Private = serialization.PrivateFormat
Encoding = serialization.Encoding


def _keys():
    return [
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ec.generate_private_key(ec.SECP521R1()),
    ]


KEYS = _keys()


def _openssh_public(key) -> str:
    return key.public_key().public_bytes(Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


def _private_texts() -> list[str]:
    """Every common private-key format: PEM (traditional, PKCS#8, encrypted PKCS#8), OpenSSH
    (with and without its armour), PuTTY and the ssh.com format."""
    rsa_key, ed_key = KEYS[1], KEYS[0]
    none = serialization.NoEncryption()
    secret = serialization.BestAvailableEncryption(b"pass phrase")
    pem = [
        rsa_key.private_bytes(Encoding.PEM, Private.TraditionalOpenSSL, none),
        rsa_key.private_bytes(Encoding.PEM, Private.PKCS8, none),
        rsa_key.private_bytes(Encoding.PEM, Private.PKCS8, secret),
        KEYS[2].private_bytes(Encoding.PEM, Private.TraditionalOpenSSL, none),
        dsa.generate_private_key(key_size=1024).private_bytes(
            Encoding.PEM, Private.TraditionalOpenSSL, none
        ),
        ed_key.private_bytes(Encoding.PEM, Private.OpenSSH, none),
    ]
    texts = [p.decode() for p in pem]
    openssh_body = "".join(texts[-1].splitlines()[1:-1])
    return [
        *texts,
        openssh_body,
        "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: me\n"
        "Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5\nPrivate-Lines: 1\nAAAAIG...\n",
        "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nComment: me\nP2/56wAAA...\n"
        "---- END SSH2 ENCRYPTED PRIVATE KEY ----",
    ]


@pytest.mark.parametrize("key", KEYS, ids=lambda k: type(k).__name__)
def test_a_real_public_key_is_read_and_fingerprinted_as_ssh_keygen_does(key) -> None:
    line = _openssh_public(key).decode() + " me@laptop"
    found = read_key(line)
    assert isinstance(found, PublicKey)
    assert found.line == line
    blob = base64.b64decode(line.split()[1])
    expected = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    assert found.fingerprint == f"SHA256:{expected}"
    assert found.fingerprint in found.label and "me@laptop" in found.label


@pytest.mark.parametrize("text", _private_texts())
def test_private_keys_of_every_common_format_are_refused_and_not_repeated(text: str) -> None:
    found = read_key(text)
    assert found == KeyProblem(PRIVATE_KEY_REFUSAL, private=True)
    assert "rotate" in found.sentence
    lines = [line for line in text.splitlines() if len(line) > 20]
    assert not any(line in found.sentence for line in lines)


@given(st.sampled_from(KEY_TYPES), st.binary(min_size=1, max_size=600), st.text(max_size=40))
def test_key_shaped_strings_are_read_only_when_their_blob_names_their_type(
    kind: str, payload: bytes, comment: str
) -> None:
    """A type, some base64, a comment: accepted only when the blob really is that type."""
    blob = base64.b64encode(payload).decode()
    text = f"{kind} {blob} {comment}"
    found = read_key(text)
    name = kind.encode()
    names_its_type = payload[:4] == len(name).to_bytes(4, "big") and payload[4:].startswith(name)
    if isinstance(found, PublicKey):
        assert names_its_type and len(payload) > 4 + len(name)
        assert found.kind == kind and found.fingerprint.startswith("SHA256:")
    else:
        assert found.sentence.endswith(".")
        assert len(blob) < 8 or blob not in found.sentence  # the paste is not repeated


@given(st.sampled_from(KEY_TYPES), st.binary(min_size=1, max_size=200), st.text(max_size=60))
@example("ssh-ed25519", b"x", "\n0")  # a newline before the comment: two lines, refused
def test_a_well_formed_blob_is_accepted_with_any_printable_comment(
    kind: str, material: bytes, comment: str
) -> None:
    name = kind.encode()
    blob = len(name).to_bytes(4, "big") + name + material
    text = f"{kind} {base64.b64encode(blob).decode()} {comment}"
    found = read_key(text)
    printable = all(" " <= c <= "~" for c in comment.strip())
    one_line = not any(end in text.strip() for end in "\r\n")  # "\n0" is two lines, not a comment
    if (
        printable
        and one_line
        and len(comment.strip()) <= 100
        and "PRIVATE KEY" not in comment.upper()
    ):
        assert isinstance(found, PublicKey), found
        assert found.comment == comment.strip()
    else:
        assert isinstance(found, KeyProblem)


@given(st.text(max_size=3000))
def test_any_text_gets_a_key_or_a_sentence(text: str) -> None:
    found = read_key(text)
    assert isinstance(found, PublicKey | KeyProblem)
    if isinstance(found, KeyProblem):
        assert found.sentence.endswith(".")


def test_a_key_longer_than_the_limit_is_refused_with_the_limit() -> None:
    name = b"ssh-rsa"
    blob = len(name).to_bytes(4, "big") + name + bytes(MAX_KEY_CHARS)
    found = read_key(f"ssh-rsa {base64.b64encode(blob).decode()}")
    assert isinstance(found, KeyProblem) and f"{MAX_KEY_CHARS:,}" in found.sentence


def test_a_truncated_key_is_refused_as_damaged() -> None:
    line = _openssh_public(KEYS[0]).decode()
    found = read_key(line[:-10])
    assert isinstance(found, KeyProblem) and "damaged" in found.sentence
