"""Test vectors for signed RoutingCommands (``tests/data/command_signing_vectors.json``): commands as
the evaluator publishes them, their RFC 8785 canonical form and their HMAC-SHA256 and Ed25519
signatures, under published **test** keys (never use them for anything else). A router in any
language checks its implementation against them; the suite checks them in Python and in Node.

``python -m tests.signing_vectors`` writes the file; ``tests/test_signing.py`` fails when it is stale.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.codec import encode
from schemas.control import RoutingCommand
from schemas.signing import Ed25519Signer, HmacKey, sign_command

PATH = Path(__file__).parent / "data" / "command_signing_vectors.json"
#: RFC 8032, section 7.1, test 1: a published Ed25519 secret key.
TEST_ED25519_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
TEST_HMAC_SECRET = b"shadowcanary test vectors secret"

COMMANDS = {
    "a canary step (90.0 is written 90)": dict(
        command_id="6f1c2e4a-3b5d-4c7e-8f90-a1b2c3d4e5f6", model="fraud", epoch=1, issued_at=1_790_000_000_000,
        issuer="evaluator", action="set_routes", routes={"v1": 90.0, "v2": 10.0}, shadow=[],
        reason="stage 1 of 4: v1 90%, v2 10%", rollout_id="fraud@0:17", baseline="v1"),
    "a fraction, a shadow and a field this reader does not know (cohort)": dict(
        command_id="0b9e8d7c-6a5f-4e3d-9c2b-1a0f9e8d7c6b", model="pricing", epoch=12, issued_at=1_790_000_123_456,
        issuer="evaluator", action="set_routes", routes={"v3": 33.25, "v4": 66.75}, shadow=["v5"],
        cohort={"region": "eu", "tier": "gold"}, reason="stage 2 of 3", rollout_id="pricing@1:4", baseline="v3"),
    "a person's rollback, with text outside ASCII": dict(
        command_id="c0ffee00-1234-4abc-8def-0123456789ab", model="rank", epoch=7, issued_at=1_790_000_999_999,
        issuer="cli:zoë", action="rollback", routes={"v1": 100.0}, shadow=[],
        reason="NDCG fell 3 points — rolling back ✓", rollout_id="rank@0:2", baseline=None),
}


def vector_keys() -> tuple[HmacKey, Ed25519Signer]:
    return HmacKey(TEST_HMAC_SECRET), Ed25519Signer(Ed25519PrivateKey.from_private_bytes(TEST_ED25519_SEED))


def vectors() -> dict:
    hmac_key, ed25519 = vector_keys()
    public_pem = ed25519.verifier().pem()
    out = []
    for name, values in COMMANDS.items():
        command = RoutingCommand(**values)
        out.append({
            "name": name,
            "canonical": command.canonical_json().decode(),
            "record_hmac": encode(sign_command(command, hmac_key)).decode(),
            "record_ed25519": encode(sign_command(command, ed25519)).decode(),
        })
    return {
        "description": "Signed RoutingCommands: each record as published on rollout.control; a verifier parses "
                       "it, drops 'signature', canonicalizes the rest with RFC 8785 ('canonical') and checks the "
                       "signature over those UTF-8 bytes. TEST KEYS ONLY (the Ed25519 key is RFC 8032's test 1).",
        "hmac_secret_base64": base64.b64encode(TEST_HMAC_SECRET).decode(),
        "ed25519_private_key_seed_hex": TEST_ED25519_SEED.hex(),
        "ed25519_public_key_pem": public_pem.decode(),
        "vectors": out,
    }


def render() -> str:
    return json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {PATH}")
