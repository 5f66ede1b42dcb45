"""The local broker's lifecycle and the CLI's one-line errors (a real broker, real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from streams.kafka.local_broker import free_port


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_clear_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.kafka
def test_up_twice_is_harmless_status_and_down_purge(tmp_path):
    home = tmp_path / "broker"
    port = free_port()
    try:
        first = run_cli("broker", "up", "--port", str(port), "--home", str(home))
        assert first.returncode == 0, first.stderr
        assert "running: Kafka 4." in first.stdout and f"127.0.0.1:{port}" in first.stdout
        second = run_cli("broker", "up", "--port", str(port), "--home", str(home))
        assert second.returncode == 0 and second.stdout.startswith("already running")
        status = run_cli("broker", "status", "--home", str(home))
        assert "running" in status.stdout and (home / "broker.log").exists()
        created = run_cli("--bootstrap", f"127.0.0.1:{port}", "topics", "create")
        assert created.returncode == 0 and "9 topics ready" in created.stdout
    finally:
        down = run_cli("broker", "down", "--purge", "--home", str(home))
    assert down.returncode == 0 and "stopped the broker" in down.stdout
    assert not home.exists()
    again = run_cli("broker", "down", "--home", str(home))
    assert again.returncode == 0 and "no broker running" in again.stdout
    assert "not running" in run_cli("broker", "status", "--home", str(home)).stdout


def test_port_in_use_is_one_clear_line(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("broker", "up", "--port", str(port), "--home", str(tmp_path / "b"))
    assert_one_clear_line(result, f"port {port}", "in use")


def test_missing_java_is_one_clear_line(tmp_path):
    bare_path = tmp_path / "bin"
    bare_path.mkdir()
    result = run_cli("broker", "up", "--port", str(free_port()), "--home", str(tmp_path / "b"),
                     env={"PATH": str(bare_path), "JAVA_HOME": ""})
    assert_one_clear_line(result, "Java not found")


def test_unreachable_bootstrap_is_one_clear_line():
    port = free_port()  # nothing listens there
    result = run_cli("--bootstrap", f"127.0.0.1:{port}", "topics", "verify")
    assert_one_clear_line(result, f"127.0.0.1:{port}", "did not answer")


def test_bad_flag_names_the_flag():
    result = run_cli("broker", "up", "--port", "eighty")
    assert result.returncode == 2
    assert "--port" in result.stderr and "Traceback" not in result.stderr


def test_bad_bootstrap_setting_names_the_field():
    result = run_cli("topics", "verify", env={"KAFKA_BOOTSTRAP": "nonsense"})
    assert_one_clear_line(result, "bootstrap_servers")


def test_storage_formats_with_a_cluster_id_that_starts_with_a_dash(tmp_path, monkeypatch):
    """Regression: a base64 cluster id may begin with '-', which the formatter once took for a flag."""
    import uuid as uuid_module

    from streams.kafka.local_broker import LocalBroker, find_java, resolve_jars

    broker = LocalBroker(tmp_path / "b", port=free_port())
    broker.home.mkdir(parents=True)
    broker._write_config()
    monkeypatch.setattr("streams.kafka.local_broker.uuid.uuid4", lambda: uuid_module.UUID(bytes=b"\xfb" + b"\0" * 15))
    broker._format(find_java(), resolve_jars())
    assert (broker.data_dir / "meta.properties").read_text().count("cluster.id=-") == 1
