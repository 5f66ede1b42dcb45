"""Connection settings: where Kafka is, what the topics are called, and how to authenticate.

Settings come from, highest precedence first: command-line flags, environment variables, a YAML
config file (``--config`` or ``SHADOWCANARY_CONFIG``), and defaults. They are validated by pydantic,
so a typo in a file or a bad value in the environment is reported with the field's name.

The same settings feed both Kafka clients: :meth:`KafkaSettings.confluent_config` for
confluent-kafka (librdkafka property names) and :meth:`KafkaSettings.aiokafka_kwargs` for aiokafka,
which faust-streaming runs on.

>>> s = KafkaSettings(bootstrap_servers="127.0.0.1:9092", topic_prefix="acme.")
>>> s.confluent_config()["bootstrap.servers"]
'127.0.0.1:9092'
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from schemas.errors import describe_validation_error
from streams.errors import ConfigError

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

#: Environment variable -> settings field.
ENVIRONMENT = {
    "KAFKA_BOOTSTRAP": "bootstrap_servers",
    "SHADOWCANARY_TOPIC_PREFIX": "topic_prefix",
    "KAFKA_SECURITY_PROTOCOL": "security_protocol",
    "KAFKA_SASL_MECHANISM": "sasl_mechanism",
    "KAFKA_SASL_USERNAME": "sasl_username",
    "KAFKA_SASL_PASSWORD": "sasl_password",
    "KAFKA_SSL_CA_LOCATION": "ssl_ca_location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl_certificate_location",
    "KAFKA_SSL_KEY_LOCATION": "ssl_key_location",
}
CONFIG_FILE_ENV = "SHADOWCANARY_CONFIG"

#: librdkafka's own log lines (connection refused, retries...) go here instead of stderr; silent unless
#: a handler is attached (``shadowcanary -v``), since the shell reports failures itself in one line.
CLIENT_LOGGER = logging.getLogger("shadowcanary.librdkafka")
CLIENT_LOGGER.addHandler(logging.NullHandler())
CLIENT_LOGGER.propagate = False


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster and name the topics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(DEFAULT_BOOTSTRAP, min_length=1)
    topic_prefix: str = Field("", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    #: Extra librdkafka properties passed through unchanged to confluent-kafka clients.
    librdkafka: dict[str, str] = Field(default_factory=dict)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server.strip()!r}")
        return value

    def confluent_config(self, **extra: Any) -> dict[str, Any]:
        """Properties for a confluent-kafka Producer, Consumer or AdminClient."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "logger": CLIENT_LOGGER,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            config["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        if self.ssl_certificate_location:
            config["ssl.certificate.location"] = str(self.ssl_certificate_location)
        if self.ssl_key_location:
            config["ssl.key.location"] = str(self.ssl_key_location)
        config.update(self.librdkafka)
        config.update(extra)
        return config

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (the security part; faust passes them through)."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            kwargs["sasl_plain_username"] = self.sasl_username
        if self.sasl_password is not None:
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self.ssl_context()
        return kwargs

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(
            cafile=str(self.ssl_ca_location) if self.ssl_ca_location else None
        )
        if self.ssl_certificate_location:
            context.load_cert_chain(
                str(self.ssl_certificate_location),
                str(self.ssl_key_location) if self.ssl_key_location else None,
            )
        return context

    def faust_broker_url(self) -> str:
        """The ``broker`` argument of a faust App."""
        return ";".join(f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(","))


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    return {field: environ[var] for var, field in ENVIRONMENT.items() if environ.get(var)}


def _from_file(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'kafka' section")
    section = document.get("kafka", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: kafka: expected a mapping")
    return section


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> KafkaSettings:
    """Merge defaults < config file < environment < ``overrides`` (flags; ``None`` values ignored).

    >>> load_settings({"topic_prefix": "t."}, environ={"KAFKA_BOOTSTRAP": "h:1"}).bootstrap_servers
    'h:1'
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    source = "settings"
    config_file = config_file or (Path(environ[CONFIG_FILE_ENV]) if environ.get(CONFIG_FILE_ENV) else None)
    if config_file is not None:
        values.update(_from_file(config_file))
        source = str(config_file)
    values.update(_from_environment(environ))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return KafkaSettings(**values)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from None
