"""Errors the shell reports to people as one clear line (the CLI prints ``error: <message>``)."""

from __future__ import annotations


class ShadowCanaryError(Exception):
    """An expected failure with a message a person can act on; never shown as a traceback."""


class ConfigError(ShadowCanaryError):
    """Bad settings: a flag, an environment variable or a config file."""


class BrokerError(ShadowCanaryError):
    """The local broker could not be started, stopped or reached."""


class KafkaUnavailableError(ShadowCanaryError):
    """A Kafka cluster did not answer in time."""


class TopicLayoutError(ShadowCanaryError):
    """Existing topics do not match the contract (partition counts, cleanup policy)."""
