"""Connection settings: where Kafka is, what the topics are called, and how to authenticate.

Settings come from, highest precedence first: command-line flags, environment variables, a YAML
config file (``--config`` or ``SHADOWCANARY_CONFIG``), and defaults. They are validated by pydantic,
so a typo in a file or a bad value in the environment is reported with the field's name.

Every Kafka client of the project is confluent-kafka (librdkafka); :meth:`KafkaSettings.confluent_config`
gives its properties.

>>> s = KafkaSettings(bootstrap_servers="127.0.0.1:9092", topic_prefix="acme.")
>>> s.confluent_config()["bootstrap.servers"]
'127.0.0.1:9092'
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

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

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables a child process reads (``librdkafka``
        extras are not carried: they have no variable).

        >>> KafkaSettings(bootstrap_servers="a:1", sasl_password="pw").environment()["KAFKA_SASL_PASSWORD"]
        'pw'
        """
        out = {}
        for variable, name in ENVIRONMENT.items():
            value = getattr(self, name)
            if value is None:
                continue
            out[variable] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return out

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


#: librdkafka error codes that retrying will not mend -> the settings to look at.
_REFUSALS = {
    "_AUTHENTICATION": "sasl_mechanism, sasl_username and sasl_password (KAFKA_SASL_MECHANISM, "
                       "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)",
    "SASL_AUTHENTICATION_FAILED": "sasl_mechanism, sasl_username and sasl_password (KAFKA_SASL_MECHANISM, "
                                  "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD)",
    "_SSL": "security_protocol and ssl_ca_location (KAFKA_SECURITY_PROTOCOL, KAFKA_SSL_CA_LOCATION)",
    "TOPIC_AUTHORIZATION_FAILED": "the ACLs of the user in sasl_username (KAFKA_SASL_USERNAME)",
    "GROUP_AUTHORIZATION_FAILED": "the ACLs of the user in sasl_username (KAFKA_SASL_USERNAME)",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "the ACLs of the user in sasl_username (KAFKA_SASL_USERNAME)",
    "CLUSTER_AUTHORIZATION_FAILED": "the ACLs of the user in sasl_username (KAFKA_SASL_USERNAME)",
}


def refusal_hint(error: Any) -> str | None:
    """For a librdkafka error (``KafkaError``) that means the cluster refuses these settings (wrong
    password, TLS, ACLs): the settings to check; None for anything retrying may mend.

    >>> from confluent_kafka import KafkaError
    >>> refusal_hint(KafkaError(KafkaError._AUTHENTICATION)).startswith("sasl_mechanism")
    True
    >>> refusal_hint(KafkaError(KafkaError._TRANSPORT)) is None
    True
    """
    return _refusal_by_code().get(error.code())


@functools.cache
def _refusal_by_code() -> dict[int, str]:
    from confluent_kafka import KafkaError

    return {getattr(KafkaError, name): hint for name, hint in _REFUSALS.items()}


class ClientErrors:
    """A client's ``error_cb``: keeps the first refusal librdkafka reports (see :func:`refusal_hint`)."""

    def __init__(self) -> None:
        self.refusal: str | None = None

    def __call__(self, error: Any) -> None:
        hint = refusal_hint(error)
        if hint is not None and self.refusal is None:
            self.refusal = f"{error.str()}: check {hint}"


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
