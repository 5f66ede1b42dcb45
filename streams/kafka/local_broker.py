"""A real single-node Kafka (KRaft, combined broker and controller) from Apache Kafka's own jars.

The jars are resolved from Maven Central by ``deploy/kafka/pom.xml`` into ``deploy/kafka/lib``
(``make setup`` does it; :meth:`LocalBroker.up` does it too when they are missing). Everything the
broker writes lives under one folder (``.shadowcanary/broker`` by default): its storage, config,
log and pid file. ``down(purge=True)`` removes that folder.

Usage::

    broker = LocalBroker(LocalBroker.default_home(), port=9092)
    broker.up()        # formats storage on first start, waits until Kafka answers
    broker.status()
    broker.down()
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from streams.errors import BrokerError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KAFKA_HOME_ENV = "SHADOWCANARY_KAFKA_HOME"
HOME_ENV = "SHADOWCANARY_HOME"


def local_root() -> Path:
    """Where ShadowCanary keeps what it writes locally by default (the broker, demo runs, an evaluator's
    state, replays): ``$SHADOWCANARY_HOME``, else ``.shadowcanary`` in the project's folder."""
    return Path(os.environ[HOME_ENV]) if os.environ.get(HOME_ENV) else PROJECT_ROOT / ".shadowcanary"


def kafka_home() -> Path:
    """Folder holding ``pom.xml``, ``log4j2.xml`` and (once resolved) ``lib/``."""
    return Path(os.environ.get(KAFKA_HOME_ENV, PROJECT_ROOT / "deploy" / "kafka"))


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port the OS just had free on 127.0.0.1 (for tests and ephemeral brokers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("Java not found: install a Java 17+ runtime (java on PATH, or JAVA_HOME)")
    return java


def resolve_jars(home: Path | None = None) -> Path:
    """Make sure Kafka's jars are in ``<kafka home>/lib``; fetch them with Maven if not."""
    home = home or kafka_home()
    lib = home / "lib"
    if lib.is_dir() and any(lib.glob("kafka_2.13-*.jar")):
        return lib
    pom = home / "pom.xml"
    if not pom.exists():
        raise BrokerError(f"no {pom}: set {KAFKA_HOME_ENV} to the folder holding the broker's pom.xml")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) not found: it resolves the Kafka jars from Maven Central")
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies"],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not any(lib.glob("kafka_2.13-*.jar")):
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise BrokerError("could not resolve the Kafka jars with Maven: " + " | ".join(tail))
    return lib


def kafka_version(lib: Path) -> str:
    jars = sorted(lib.glob("kafka_2.13-*.jar"))
    return jars[0].name.removeprefix("kafka_2.13-").removesuffix(".jar") if jars else "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited child not yet reaped) is not alive.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def cluster_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a Kafka cluster at ``bootstrap`` returns metadata within ``timeout`` seconds."""
    from confluent_kafka.admin import AdminClient

    from streams.kafka.settings import CLIENT_LOGGER

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000,
                         "logger": CLIENT_LOGGER})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except Exception:  # KafkaException on timeout; anything else also means "not answering"
        return False
    return bool(metadata.brokers)


@dataclass(frozen=True)
class SecureListener:
    """A second client listener, SASL_SSL with SCRAM-SHA-512 over TLS, beside the plaintext one
    (which stays for the broker's own traffic and the readiness check).

    ``keystore``: one PEM file holding the broker's certificate (chain) and its unencrypted PKCS#8
    private key; ``users``: SCRAM user name -> password, created when storage is formatted.
    """

    port: int
    keystore: Path
    users: tuple[tuple[str, str], ...]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class BrokerStatus:
    running: bool
    pid: int | None
    bootstrap: str | None
    home: Path
    log_file: Path
    version: str | None = None

    def describe(self) -> str:
        if self.running:
            return (f"running: Kafka {self.version} on {self.bootstrap} (pid {self.pid}); "
                    f"data {self.home}; log {self.log_file}")
        return f"not running; data folder {self.home}"


class LocalBroker:
    """Start, query and stop one local KRaft broker whose files all live under ``home``."""

    def __init__(self, home: Path, port: int = 9092, controller_port: int | None = None,
                 heap: str = "768m", secure: SecureListener | None = None) -> None:
        self.home = Path(home)
        self.port = port
        self.controller_port = controller_port or port + 1
        self.heap = heap
        self.secure = secure

    @staticmethod
    def default_home() -> Path:
        return local_root() / "broker"

    # Files under home
    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "broker.log"

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    @property
    def _state_file(self) -> Path:
        return self.home / "broker.json"

    @property
    def _config_file(self) -> Path:
        return self.home / "server.properties"

    def _read_state(self) -> dict | None:
        try:
            state = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return None
        return state if _pid_alive(int(state.get("pid", -1))) else None

    def status(self) -> BrokerStatus:
        state = self._read_state()
        if state is None:
            return BrokerStatus(False, None, None, self.home, self.log_file)
        return BrokerStatus(True, state["pid"], state["bootstrap"], self.home, self.log_file,
                            state.get("version"))

    def _write_config(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "message.max.bytes": str(2 * 1024 * 1024),
        }
        if self.secure is not None:
            secure = self.secure
            props["listeners"] += f",SASL_SSL://127.0.0.1:{secure.port}"
            props["advertised.listeners"] += f",SASL_SSL://127.0.0.1:{secure.port}"
            props["listener.security.protocol.map"] += ",SASL_SSL:SASL_SSL"
            props.update({
                "sasl.enabled.mechanisms": "SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
                "listener.name.sasl_ssl.ssl.keystore.location": str(secure.keystore),
            })
        self._config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

    def _java_command(self, java: str, lib: Path, main: str, *args: str, heap: str | None = None) -> list[str]:
        home = kafka_home()
        command = [java]
        if heap:
            command += [f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC"]
        command += [
            f"-Dkafka.logs.file={self.log_file}",
            f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
            "-Djava.awt.headless=true",
            "-cp", f"{lib}/*", main, *args,
        ]
        return command

    def _format(self, java: str, lib: Path) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            # "--cluster-id=..." in one word: a base64 id may start with "-", which argparse would
            # take for an option.
            self._java_command(java, lib, "kafka.tools.StorageTool", "format",
                               f"--cluster-id={cluster_id}", "-c", str(self._config_file), *self._scram_users()),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise BrokerError(f"formatting storage failed: {(result.stdout + result.stderr).strip()[-300:]}")

    def _scram_users(self) -> list[str]:
        """``--add-scram`` arguments: SCRAM credentials are written with the storage (KRaft)."""
        if self.secure is None:
            return []
        return [arg for name, password in self.secure.users
                for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]

    def up(self, timeout: float = 90.0) -> BrokerStatus:
        """Start the broker unless it already runs; return once it answers metadata requests."""
        current = self.status()
        if current.running:
            return current
        java = find_java()
        for port in (self.port, self.controller_port, *([self.secure.port] if self.secure else [])):
            if not port_is_free(port):
                raise BrokerError(f"port {port} on 127.0.0.1 is in use by another process; "
                                  "choose another with --port")
        lib = resolve_jars()
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(java, lib)
        bootstrap = f"127.0.0.1:{self.port}"
        with open(self.home / "broker.out", "ab") as out:
            process = subprocess.Popen(
                self._java_command(java, lib, "kafka.Kafka", str(self._config_file), heap=self.heap),
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        version = kafka_version(lib)
        self._state_file.write_text(json.dumps({"pid": process.pid, "bootstrap": bootstrap,
                                                "version": version}))
        self._pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BrokerError(f"the broker exited with status {process.returncode} during start; "
                                  f"see {self.log_file}: {self._last_log_line()}")
            if cluster_answers(bootstrap, timeout=1.0):
                return self.status()
            time.sleep(0.3)
        self._stop_pid(process.pid)
        raise BrokerError(f"the broker did not answer on {bootstrap} within {timeout:.0f}s; see {self.log_file}")

    def _last_log_line(self) -> str:
        for path in (self.log_file, self.home / "broker.out"):
            try:
                lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                continue
            errors = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
            if errors or lines:
                return (errors or lines)[-1][:300]
        return "(no log)"

    @staticmethod
    def _stop_pid(pid: int, timeout: float = 30.0) -> None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                break
            time.sleep(0.2)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:  # reap it if it is our child (tests start brokers in-process)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass

    def down(self, purge: bool = False) -> str:
        """Stop the broker (cleanly, SIGKILL after 30 s); with ``purge`` remove its data folder."""
        state = self._read_state()
        if state is None:
            message = "no broker running"
        else:
            self._stop_pid(int(state["pid"]))
            message = f"stopped the broker on {state['bootstrap']} (pid {state['pid']})"
        for path in (self._state_file, self._pid_file):
            path.unlink(missing_ok=True)
        if purge and self.home.exists():
            shutil.rmtree(self.home)
            message += f"; removed {self.home}"
        return message
