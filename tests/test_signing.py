"""Command signatures: HMAC-SHA256 and Ed25519, key files, and every way a command is refused."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import orjson
import pytest
import rfc8785

from schemas.control import RoutingCommand
from schemas.signing import (
    HmacKey,
    SigningKeyError,
    generate_key,
    load_signer,
    load_verifier,
    sign_command,
    verify_command,
)
from tests.signing_vectors import PATH as VECTORS_PATH
from tests.signing_vectors import render as render_vectors
from tests.signing_vectors import vector_keys

NODE_VERIFIER = Path(__file__).resolve().parents[1] / "tools" / "command-verify" / "verify.mjs"


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


def test_signature_survives_the_wire_and_is_checked_over_the_record_as_received():
    key = HmacKey(b"k" * 32)
    signed = sign_command(command(baseline=None), key)
    assert b'"baseline":null' in signed.canonical_json() and b'"v1":90,' in signed.canonical_json()
    wire = signed.model_dump_json().encode()
    again = RoutingCommand.model_validate_json(wire)
    assert verify_command(again, key) is None and verify_command(again, key, raw=wire) is None
    # Another language's signer that leaves out a field it does not know (and writes 90, not 90.0):
    # its record verifies as it was received, although this reader's model holds the field as null.
    document = orjson.loads(wire)
    del document["baseline"], document["signature"]
    document["routes"] = {"v1": 90, "v2": 10}
    foreign = sign_raw(document, key)
    parsed = RoutingCommand.model_validate_json(foreign)
    assert verify_command(parsed, key, raw=foreign) is None
    tampered = foreign.replace(b'"epoch":1', b'"epoch":2')
    assert verify_command(RoutingCommand.model_validate_json(tampered), key, raw=tampered).startswith("bad signature")


def test_commands_signed_in_the_form_before_rfc_8785_still_verify():
    key = HmacKey(b"k" * 32)
    unsigned = command(baseline=None)
    legacy = unsigned.model_copy(update={
        "signature": "hmac-sha256:" + base64.b64encode(key.sign(unsigned.legacy_canonical_json())).decode()})
    assert verify_command(legacy, key) is None
    assert verify_command(legacy, key, raw=legacy.model_dump_json().encode()) is None
    assert verify_command(legacy.model_copy(update={"epoch": 9}), key).startswith("bad signature")


def sign_raw(document: dict, key: HmacKey) -> bytes:
    """A record as a signer in another language writes it: RFC 8785 over the document, then the
    signature added."""
    signature = "hmac-sha256:" + base64.b64encode(key.sign(rfc8785.dumps(document))).decode()
    return orjson.dumps({**document, "signature": signature})


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


# -- test vectors: any language verifies ------------------------------------------------------------
def test_the_committed_vectors_are_current_and_verify_in_python():
    assert VECTORS_PATH.read_text(encoding="utf-8") == render_vectors()  # python -m tests.signing_vectors
    hmac_key, ed25519 = vector_keys()
    for vector in orjson.loads(VECTORS_PATH.read_bytes())["vectors"]:
        for record, verifier in ((vector["record_hmac"], hmac_key), (vector["record_ed25519"], ed25519.verifier())):
            raw = record.encode()
            command = RoutingCommand.model_validate_json(raw)
            assert command.canonical_json().decode() == vector["canonical"]
            assert verify_command(command, verifier, raw=raw) is None, vector["name"]
            tampered = raw.replace(b'"epoch":', b'"epoch":1')
            assert verify_command(RoutingCommand.model_validate_json(tampered), verifier, raw=tampered)


def _node(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(NODE_VERIFIER), *args], capture_output=True, text=True, timeout=60)


def test_node_verifies_the_vectors_and_refuses_a_tampered_one(tmp_path):
    good = _node("vectors", str(VECTORS_PATH))
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "3 of 3 vectors verified"
    data = orjson.loads(VECTORS_PATH.read_bytes())
    data["vectors"][0]["record_ed25519"] = data["vectors"][0]["record_ed25519"].replace('"v1":90.0', '"v1":80.0')
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(orjson.dumps(data))
    bad = _node("vectors", str(tampered))
    assert bad.returncode == 1 and "bad signature (ed25519)" in bad.stderr
