"""Security passed through: a local broker with a SASL_SSL listener (SCRAM-SHA-512 over TLS, with
certificates this test makes), and every client of the project through it: the CLI, the worker, the
inference logger and the router. A wrong password ends with a clear error naming the settings,
within seconds, instead of a hang."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from evaluators.counts import JoinCounts
from schemas import Topics
from schemas.control import RoutingCommand
from schemas.inference import InferenceRequest, InferenceResponse
from schemas.internal_topics import partials_topic_name
from streams.kafka.local_broker import LocalBroker, SecureListener, free_port
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings
from streams.serving.inference_logger import InferenceLogger
from streams.serving.router import Router
from tests.kafka_helpers import read_topic, start_evaluator, stop_workers, wait_for

pytestmark = pytest.mark.kafka

USER, PASSWORD = "evaluator", "s3cret-scram-pw"


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_certificates(folder: Path) -> tuple[Path, Path]:
    """A CA and a broker certificate for 127.0.0.1/localhost signed by it: (CA PEM, broker keystore PEM)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("shadowcanary test CA"))
        .issuer_name(_name("shadowcanary test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    keystore = folder / "broker.pem"
    keystore.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
                         + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    return ca_pem, keystore


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure")
    ca_pem, keystore = make_certificates(folder)
    listener = SecureListener(free_port(), keystore, ((USER, PASSWORD),))
    broker = LocalBroker(folder / "kafka", port=free_port(), controller_port=free_port(), secure=listener)
    broker.up()
    try:
        yield listener, ca_pem
    finally:
        broker.down(purge=True)


def secure_settings(listener: SecureListener, ca_pem: Path, password: str = PASSWORD) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=listener.bootstrap, topic_prefix=f"sec{uuid.uuid4().hex[:6]}.",
                         security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username=USER,
                         sasl_password=password, ssl_ca_location=ca_pem)


def cli(settings: KafkaSettings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **settings.environment()})


def test_cli_worker_logger_and_router_work_through_sasl_ssl(secure_broker, tmp_path):
    listener, ca_pem = secure_broker
    settings = secure_settings(listener, ca_pem)
    created = cli(settings, "topics", "create", "--partitions", "2")
    assert created.returncode == 0, created.stderr
    topics = Topics(settings.topic_prefix)
    worker = start_evaluator(settings, f"sec-{uuid.uuid4().hex[:6]}", str(tmp_path / "worker"), "--metrics-port", "0")
    router = Router(settings, baselines={"fraud": "v1"})
    router.start()
    try:
        logger = InferenceLogger(settings)
        t0 = int(time.time() * 1000)
        for i in range(200):
            rid = f"r{i}"
            assert logger.log_request(InferenceRequest(request_id=rid, model="fraud", ts=t0 + i))
            assert logger.log_response(InferenceResponse(request_id=rid, model="fraud", version="v1", role="primary",
                                                         ts=t0 + i + 1, prediction=1, latency_ms=3.0))
        assert logger.close() == 0

        def responses_counted() -> int:
            latest = {
                m.key(): orjson.loads(m.value())
                for m in read_topic(settings, partials_topic_name(topics), linger=1)
                if m.key().startswith(b"h/") and m.value() is not None
            }
            total = JoinCounts()
            for partial in latest.values():
                total.merge(JoinCounts.from_state(partial["counts"]))
            return sum(v["responses"] for key, v in total.to_state()["versions"].items() if key.startswith("fraud"))

        assert wait_for(lambda: responses_counted() == 200, 90)
        producer = ContractProducer(settings)
        producer.send(topics.control, "fraud", RoutingCommand(
            model="fraud", epoch=1, issued_at=t0, issuer="cli:test", action="set_routes", routes={"v1": 80, "v2": 20},
            reason="canary 20%", rollout_id="sec", baseline="v1"))
        producer.flush()
        assert router.wait_ready(30)
        assert wait_for(lambda: router.serving("fraud") == {"v1": 80, "v2": 20}, 30)
        assert worker.poll() is None
    finally:
        router.stop()
        stop_workers(worker)


def test_a_wrong_password_is_a_clear_error_within_seconds(secure_broker, tmp_path):
    listener, ca_pem = secure_broker
    settings = secure_settings(listener, ca_pem, password="not-the-password")
    started = time.monotonic()
    created = cli(settings, "topics", "create")
    assert created.returncode == 1
    assert "sasl_password" in created.stderr and "KAFKA_SASL_PASSWORD" in created.stderr, created.stderr
    assert time.monotonic() - started < 20
    good = secure_settings(listener, ca_pem)
    assert cli(good, "topics", "create").returncode == 0
    bad = settings.model_copy(update={"topic_prefix": good.topic_prefix})
    started = time.monotonic()
    evaluated = cli(bad, "evaluate", "--state-dir", str(tmp_path / "w"), "--metrics-port", "0", timeout=60)
    assert evaluated.returncode == 1
    assert "sasl_password" in evaluated.stderr, evaluated.stderr
    assert time.monotonic() - started < 20
