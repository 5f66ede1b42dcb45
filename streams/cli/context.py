"""What the top-level CLI options set, handed to every subcommand."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import click

from schemas.signing import Signer, SigningKeyError, load_signer
from streams.errors import ConfigError
from streams.kafka.settings import KafkaSettings, load_settings


class Context:
    """Connection overrides from flags; settings are loaded (and validated) on first use."""

    def __init__(self, overrides: dict[str, Any], config_file: Path | None,
                 signing_key: Path | None = None) -> None:
        self.overrides = overrides
        self.config_file = config_file
        self.signing_key = signing_key
        self._settings: KafkaSettings | None = None

    @property
    def signer(self) -> Signer | None:
        """What signs the routing commands this process publishes (``--signing-key``), if anything."""
        if self.signing_key is None:
            return None
        try:
            return load_signer(self.signing_key)
        except SigningKeyError as exc:
            raise ConfigError(f"--signing-key: {exc}") from None

    @property
    def bootstrap_configured(self) -> bool:
        """Whether a cluster was named by a flag, the environment or a config file."""
        import os

        return bool(self.overrides.get("bootstrap_servers") or os.environ.get("KAFKA_BOOTSTRAP")
                    or self.config_file or os.environ.get("SHADOWCANARY_CONFIG"))

    def use_bootstrap(self, bootstrap: str) -> None:
        self.overrides["bootstrap_servers"] = bootstrap
        self._settings = None

    @property
    def settings(self) -> KafkaSettings:
        if self._settings is None:
            self._settings = load_settings(self.overrides, self.config_file)
        return self._settings


pass_context = click.make_pass_decorator(Context)


#: The log format of long-running commands (tests and ``log_digest`` read its ``[LEVEL]`` field).
LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def configure_logging(level: str) -> None:
    """The format of long-running commands' logs, and the project's loggers at ``level``."""
    import logging

    logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("shadowcanary").setLevel(level.upper())


def stop_on_signals() -> threading.Event:
    """An event that Ctrl-C (SIGINT) or SIGTERM sets: a long-running loop in the main thread runs
    until it is set, then stops cleanly."""
    import signal

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def wait_until_stopped() -> None:
    """Block until Ctrl-C or SIGTERM (a long-running command's main thread; its work runs in threads)."""
    stop = stop_on_signals()
    while not stop.wait(0.5):
        pass


def key_value_pairs(what: str):
    """A click callback for a repeatable ``KEY=VALUE`` option: a dict, or a usage error that says
    ``what`` the pair is (``"NAME=COLUMN (the KPI's name and the column holding it)"``)."""
    def parse(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
        pairs = {}
        for value in values:
            key, sep, item = value.partition("=")
            if not sep or not key or not item:
                raise click.BadParameter(f"{value!r}: give {what}")
            pairs[key] = item
        return pairs
    return parse


def duration(ctx: click.Context, param: click.Parameter, value: str) -> float:
    """A click callback: a duration option (``90s``, ``15m``, ``6h``, ``7d`` or seconds) in seconds,
    or a usage error naming the option."""
    from pydantic import TypeAdapter, ValidationError

    from schemas.types import Duration

    try:
        return TypeAdapter(Duration).validate_python(value)
    except ValidationError:
        raise click.BadParameter(f"expected a duration such as 90s, 15m, 6h or 7d, got {value!r}") from None
