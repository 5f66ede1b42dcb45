"""Command signatures: HMAC-SHA256 and Ed25519, key files, and every way a command is refused."""

from __future__ import annotations

import pytest

from schemas.control import RoutingCommand
from schemas.signing import (HmacKey, SigningKeyError, generate_key, load_signer, load_verifier, sign_command,
                             verify_command)


def command(**changes) -> RoutingCommand:
    values = dict(model="fraud", epoch=1, issued_at=1_790_000_000_000, issuer="evaluator", action="set_routes",
                  routes={"v1": 90, "v2": 10}, reason="step 1", rollout_id="r1", baseline="v1")
    return RoutingCommand(**(values | changes))


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_generated_keys_sign_and_verify_and_catch_any_change(tmp_path, kind):
    paths = generate_key(kind, tmp_path / "key")
    signer = load_signer(paths[0])
    verifier = load_verifier(paths[-1])  # the public key for ed25519
    signed = sign_command(command(), signer)
    assert signed.signature.startswith(f"{signer.algorithm}:")
    assert verify_command(signed, verifier) is None
    for change in ({"epoch": 2}, {"routes": {"v1": 0, "v2": 100}}, {"reason": "x"}, {"baseline": "v2"}):
        assert verify_command(signed.model_copy(update=change), verifier).startswith("bad signature")
    assert verify_command(command(), verifier).startswith("unsigned")


def test_the_other_algorithm_and_the_wrong_key_are_refused(tmp_path):
    hmac_signed = sign_command(command(), HmacKey(b"k" * 32))
    (public,) = generate_key("ed25519", tmp_path / "ed")[1:]
    assert "expected ed25519" in verify_command(hmac_signed, load_verifier(public))
    assert verify_command(hmac_signed, HmacKey(b"j" * 32)).startswith("bad signature")
    garbled = hmac_signed.model_copy(update={"signature": "hmac-sha256:%%%"})
    assert verify_command(garbled, HmacKey(b"k" * 32)) == "bad signature: not base64"


def test_signature_survives_the_wire_and_ignores_unset_optional_fields():
    key = HmacKey(b"k" * 32)
    signed = sign_command(command(baseline=None), key)
    assert b"baseline" not in signed.canonical_json()
    again = RoutingCommand.model_validate_json(signed.model_dump_json())
    assert verify_command(again, key) is None


def test_unusable_key_files_are_named(tmp_path):
    short = tmp_path / "short"
    short.write_bytes(b"tiny\n")
    with pytest.raises(SigningKeyError, match="short: an HMAC secret needs at least 16 bytes"):
        load_signer(short)
    with pytest.raises(SigningKeyError, match="missing: cannot read key file"):
        load_verifier(tmp_path / "missing")
    bad_pem = tmp_path / "bad.pem"
    bad_pem.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(SigningKeyError, match="bad.pem: not an unencrypted PEM private key"):
        load_signer(bad_pem)
    generate_key("hmac", tmp_path / "once")
    with pytest.raises(FileExistsError):
        generate_key("hmac", tmp_path / "once")
