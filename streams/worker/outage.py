"""A broker outage in the worker's log: one line when it starts, one when it ends (with how long it
lasted), whatever librdkafka retries in between. librdkafka's own lines go to a silent logger
(:data:`streams.config.CLIENT_LOGGER`); its errors reach ``error_cb``, which calls :meth:`OutageLog.error`.

>>> outage = OutageLog(clock=iter([10.0, 12.5]).__next__)
>>> from confluent_kafka import KafkaError
>>> outage.error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
>>> outage.error(KafkaError(KafkaError._TRANSPORT))  # same outage: not logged again
>>> outage.down
True
>>> outage.working()
>>> outage.down
False
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from confluent_kafka import KafkaError

from streams.config import refusal_hint
from streams.errors import ShadowCanaryError

log = logging.getLogger("shadowcanary.worker")

#: Errors that mean the cluster cannot be reached (retried by librdkafka on its own).
UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
               KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT}


class ClusterMisconfigured(ShadowCanaryError):
    """The cluster refuses this worker (credentials, TLS, ACLs): retrying will not help."""


class OutageLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.down_since: float | None = None
        #: A misconfiguration reported by librdkafka, raised by the loop on its next turn.
        self.fatal: ClusterMisconfigured | None = None
        self._other_logged: set[int] = set()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``."""
        code = error.code()
        hint = refusal_hint(error)
        if hint is not None:
            self.fatal = ClusterMisconfigured(f"{error.str()}: check {hint}")
        elif code in UNREACHABLE:
            if self.down_since is None:
                self.down_since = self.clock()
                log.warning("Kafka unreachable (%s); retrying until it is back", error.str())
        elif code not in self._other_logged:
            self._other_logged.add(code)
            log.warning("Kafka client error: %s", error.str())

    def working(self) -> None:
        """A request to the cluster just succeeded."""
        if self.down_since is not None:
            log.warning("Kafka reachable again after %.1fs", self.clock() - self.down_since)
            self.down_since = None
