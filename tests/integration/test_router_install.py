"""A serving team installs the router SDK alone: ``pip install shadowcanary[router]`` in a fresh
virtualenv brings the router and the inference logger, and none of the evaluator's stack (RocksDB,
numpy, scipy, river, matplotlib, msgspec, click). The fresh install then follows a signed command
from the real broker and publishes requests and responses the evaluator's topics receive; its
``shadowcanary`` command says which extra it lacks instead of failing with a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import decode
from schemas.control import RoutingCommand
from schemas.inference import InferenceResponse
from schemas.signing import HmacKey, sign_command
from streams.kafka.producer import ContractProducer
from tests.kafka_helpers import read_topic

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
SECRET = "router-install-secret-32-bytes-ok"
EVALUATOR_ONLY = ("rocksdict", "numpy", "scipy", "river", "matplotlib", "msgspec", "click", "ddsketch", "rich")

#: Run by the fresh virtualenv's Python: argv = bootstrap, topic prefix, HMAC secret.
SERVING_SCRIPT = r"""
import importlib.util, json, sys, time
present = [name for name in sys.argv[4].split(",") if importlib.util.find_spec(name) is not None]
from schemas.signing import HmacKey
from streams.kafka import KafkaSettings
from streams.serving import InferenceLogger, Router

settings = KafkaSettings(bootstrap_servers=sys.argv[1], topic_prefix=sys.argv[2])
router = Router(settings, baselines={"fraud": "v1"}, verifier=HmacKey(sys.argv[3].encode()))
router.start()
ready = router.wait_ready(60)
deadline = time.monotonic() + 60
while router.serving("fraud") != {"v1": 75, "v2": 25} and time.monotonic() < deadline:
    time.sleep(0.2)
logger = InferenceLogger(settings)
served = {}
for i in range(400):
    rid = f"install-{i}"
    assignment = router.route("fraud", subject=f"user-{i}")
    served[assignment.serve] = served.get(assignment.serve, 0) + 1
    logger.log_request({"request_id": rid, "model": "fraud", "ts": 1_790_000_000_000 + i, "features": {"x": i}})
    logger.log_response({"request_id": rid, "model": "fraud", "version": assignment.serve, "role": "primary"
                         if assignment.serve == "v1" else "canary", "ts": 1_790_000_000_005 + i, "prediction": 1})
undelivered = logger.close()
router.stop()
print(json.dumps({"present": present, "ready": ready, "serving": router.serving("fraud"), "served": served,
                  "delivered": logger.outcome("delivered"), "undelivered": undelivered}))
"""


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def router_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with ``shadowcanary[router]`` installed from a copy of the package's sources (a
    build in the repository would leave its build folder there)."""
    base = tmp_path_factory.mktemp("router-install")
    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("schemas", "evaluators", "streams"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    created = _run([sys.executable, "-m", "venv", str(venv)], 120)
    assert created.returncode == 0, created.stderr
    installed = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      f"{source}[router]"], 600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def test_the_router_extra_alone_routes_by_signed_commands_and_logs_events(router_venv, kafka_settings,
                                                                           contract_topics):
    producer = ContractProducer(kafka_settings)
    command = RoutingCommand(model="fraud", epoch=1, issued_at=1_790_000_000_000, issuer="evaluator",
                             action="set_routes", routes={"v1": 75, "v2": 25}, reason="canary 25%", rollout_id="r1",
                             baseline="v1")
    producer.send(contract_topics.control, "fraud", sign_command(command, HmacKey(SECRET.encode())))
    producer.flush()
    result = _run([str(router_venv / "bin" / "python"), "-c", SERVING_SCRIPT, kafka_settings.bootstrap_servers,
                   kafka_settings.topic_prefix, SECRET, ",".join(EVALUATOR_ONLY)], 240)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["present"] == []  # none of the evaluator's libraries came with the router extra
    assert report["ready"] and report["serving"] == {"v1": 75, "v2": 25}
    assert set(report["served"]) == {"v1", "v2"} and 50 <= report["served"]["v2"] <= 150
    assert report["delivered"] == 800 and report["undelivered"] == 0
    records = read_topic(kafka_settings, contract_topics.responses, 400)
    versions = [decode(InferenceResponse, record.value()).version for record in records]
    assert len(versions) == 400
    assert {version: versions.count(version) for version in set(versions)} == report["served"]


def test_the_command_line_of_a_router_install_names_the_extra_it_needs(router_venv):
    result = _run([str(router_venv / "bin" / "shadowcanary"), "--help"], 60)
    assert result.returncode == 1
    assert result.stderr.startswith("error: the shadowcanary command needs the evaluator's libraries")
    assert "pip install 'shadowcanary[evaluator]'" in result.stderr and "Traceback" not in result.stderr
