"""Signing and verifying RoutingCommands: HMAC-SHA256 (a shared secret) or Ed25519 (a key pair).

A signature covers :meth:`RoutingCommand.canonical_json` (the command without ``signature``,
canonical as RFC 8785, so a router in any language can verify it; test vectors in
``tests/data/command_signing_vectors.json``, checked in Python and in Node) and travels as
``<algorithm>:<base64>``, with algorithm ``hmac-sha256`` or
``ed25519``. Naming the algorithm lets a verifier refuse a command signed another way than it
expects (no downgrade from a key pair to a guessed secret).

Key files: an Ed25519 key is a PEM file (private to sign, public or private to verify); any other
file is an HMAC secret (its bytes, surrounding whitespace stripped; at least 16 bytes).
``shadowcanary keys generate`` writes either kind.

>>> from schemas.control import RoutingCommand
>>> key = HmacKey(b"a shared secret of 32 bytes.....")
>>> command = RoutingCommand(model="fraud", epoch=3, issued_at=0, issuer="evaluator", action="set_routes",
...                          routes={"v1": 90, "v2": 10}, reason="step 1", rollout_id="r1")
>>> signed = sign_command(command, key)
>>> signed.signature.startswith("hmac-sha256:")
True
>>> verify_command(signed, key) is None
True
>>> verify_command(signed.model_copy(update={"epoch": 4}), key)
'bad signature: it does not match the command (forged or altered)'
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Protocol

import orjson
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas.control import RoutingCommand

HMAC = "hmac-sha256"
ED25519 = "ed25519"
MIN_SECRET_BYTES = 16


class SigningKeyError(ValueError):
    """A key file that cannot be used; the message names the file and why."""


class Signer(Protocol):
    algorithm: str

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    algorithm: str

    def verify(self, data: bytes, signature: bytes) -> bool: ...


class HmacKey:
    """A shared secret: signs and verifies."""

    algorithm = HMAC

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise SigningKeyError(f"an HMAC secret needs at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
        self._secret = secret

    def sign(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def verify(self, data: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(self.sign(data), signature)


class Ed25519Signer:
    algorithm = ED25519

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._key.public_key())


class Ed25519Verifier:
    algorithm = ED25519

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key

    def pem(self) -> bytes:
        """The public key as PEM (SubjectPublicKeyInfo), as routers load it."""
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def sign_command(command: RoutingCommand, signer: Signer) -> RoutingCommand:
    """The command with its ``signature`` set."""
    raw = signer.sign(command.canonical_json())
    return command.model_copy(update={"signature": f"{signer.algorithm}:{base64.b64encode(raw).decode()}"})


def wire_canonical_json(raw: bytes) -> bytes | None:
    """What a verifier in any language checks: the record's JSON object as received, without
    ``signature``, canonical as RFC 8785 (None if ``raw`` is not a JSON object).

    >>> wire_canonical_json(b'{"routes": {"v1": 90.0, "v2": 10.0}, "epoch": 3, "signature": "x"}')
    b'{"epoch":3,"routes":{"v1":90,"v2":10}}'
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict):
        return None
    document.pop("signature", None)
    return rfc8785.dumps(document)


def verify_command(command: RoutingCommand, verifier: Verifier, raw: bytes | None = None) -> str | None:
    """``None`` if the signature is good, else why it is refused (a sentence for the log).

    ``raw``: the record's bytes, when the command was read from a topic. The signature is then
    checked over them as received (so a field the signer left out, or one this reader does not
    know, is neither added nor lost); otherwise over the command as this process holds it. The
    form signed before RFC 8785 (:meth:`RoutingCommand.legacy_canonical_json`) is accepted too."""
    if not command.signature:
        return "unsigned: a signing key is configured and the command carries no signature"
    algorithm, sep, encoded = command.signature.partition(":")
    if not sep or algorithm != verifier.algorithm:
        return f"bad signature: expected {verifier.algorithm}, got {algorithm if sep else 'no algorithm'}"
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:
        return "bad signature: not base64"
    signed = (wire_canonical_json(raw) if raw is not None else None) or command.canonical_json()
    if verifier.verify(signed, signature) or verifier.verify(command.legacy_canonical_json(), signature):
        return None
    return "bad signature: it does not match the command (forged or altered)"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot read key file ({exc.strerror})") from None


def load_signer(path: Path) -> Signer:
    """A signer from a key file: an Ed25519 private key (PEM) or an HMAC secret."""
    data = _read(path)
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{path}: expected an Ed25519 private key, got {type(key).__name__}")
        return Ed25519Signer(key)
    try:
        return HmacKey(data.strip())
    except SigningKeyError as exc:
        raise SigningKeyError(f"{path}: {exc}") from None


def load_verifier(path: Path) -> Verifier:
    """A verifier from a key file: an Ed25519 public or private key (PEM) or an HMAC secret."""
    data = _read(path)
    if b"-----BEGIN PUBLIC KEY-----" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise SigningKeyError(f"{path}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError(f"{path}: expected an Ed25519 public key, got {type(key).__name__}")
        return Ed25519Verifier(key)
    return verifier_for(load_signer(path))


def verifier_for(signer: Signer) -> Verifier:
    """What verifies ``signer``'s signatures: its public key, or the shared secret itself."""
    return signer.verifier() if isinstance(signer, Ed25519Signer) else signer  # type: ignore[return-value]


def generate_key(kind: str, path: Path) -> list[Path]:
    """Write a new key: ``hmac`` (one secret file) or ``ed25519`` (``path`` private, ``path.pub``).

    Files are created with mode 0600 (the public key 0644); an existing file is never overwritten.
    """
    def write(target: Path, data: bytes, mode: int) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    if kind == "hmac":
        write(path, base64.b64encode(secrets.token_bytes(32)) + b"\n", 0o600)
        return [path]
    if kind != "ed25519":
        raise SigningKeyError(f"unknown key kind {kind!r}: expected hmac or ed25519")
    key = Ed25519PrivateKey.generate()
    public = path.with_name(path.name + ".pub")
    write(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()), 0o600)
    write(public, Ed25519Verifier(key.public_key()).pem(), 0o644)
    return [path, public]
