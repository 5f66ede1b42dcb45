"""A broker outage in the worker's log: one line when it starts, one when it ends (with how long it
lasted), whatever librdkafka retries in between. librdkafka's own lines go to a silent logger
(:data:`streams.kafka.settings.CLIENT_LOGGER`); its errors reach ``error_cb``, which calls :meth:`OutageLog.error`.

A broker coming back flaps for a while (connections reset, the group and the transaction
coordinator reload). Failures within ``settle_s`` of the recovery are part of the same outage: they
are counted, not logged one by one, and one line sums them up once the cluster has answered for
``settle_s``. A flap that lasts longer than ``settle_s`` is an outage again, and is logged as one.

>>> now = [10.0]
>>> outage = OutageLog(clock=lambda: now[0], settle_s=15)
>>> from confluent_kafka import KafkaError
>>> outage.error(KafkaError(KafkaError._ALL_BROKERS_DOWN))   # logged: Kafka unreachable
>>> outage.error(KafkaError(KafkaError._TRANSPORT))          # same outage: not logged again
>>> now[0] = 21.0; outage.working(since=9.5); outage.down   # a request made before it began: still down
True
>>> now[0] = 22.0; outage.working(); outage.down             # logged: reachable again after 12.0s
False
>>> now[0] = 30.0; outage.error(KafkaError(KafkaError._TRANSPORT)); outage.down   # a flap: counted
True
>>> now[0] = 31.0; outage.working(); now[0] = 50.0; outage.settle()  # logged: settled after 1 interruption
>>> outage.down, outage.recovered_at
(False, None)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaError

from streams.errors import ShadowCanaryError
from streams.kafka.settings import refusal_hint

log = logging.getLogger("shadowcanary.worker")

#: Errors that mean the cluster cannot be reached (retried by librdkafka on its own).
UNREACHABLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
               KafkaError._TIMED_OUT, KafkaError._MSG_TIMED_OUT}


class ClusterMisconfigured(ShadowCanaryError):
    """The cluster refuses this worker (credentials, TLS, ACLs): retrying will not help."""


#: How long the cluster must answer, without a new failure, for an outage to be over.
SETTLE_S = 15.0


class OutageLog:
    def __init__(self, clock: Callable[[], float] = time.monotonic, settle_s: float = SETTLE_S) -> None:
        self.clock = clock
        self.settle_s = settle_s
        #: When the current outage began (its first failure), or None.
        self.down_since: float | None = None
        #: When the cluster answered again (logged); the outage is over ``settle_s`` after the last flap.
        self.recovered_at: float | None = None
        #: When the flap in progress began, if one is; flaps since the recovery; when the last one ended.
        self.flap_since: float | None = None
        self.flaps = 0
        self.stable_since: float | None = None
        #: A misconfiguration reported by librdkafka, raised by the loop on its next turn.
        self.fatal: ClusterMisconfigured | None = None
        self._other_logged: set[int] = set()

    @property
    def down(self) -> bool:
        """Failing now (the outage not answered yet, or a flap in progress)."""
        return (self.down_since is not None and self.recovered_at is None) or self.flap_since is not None

    def error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``."""
        code = error.code()
        hint = refusal_hint(error)
        if hint is not None:
            self.fatal = ClusterMisconfigured(f"{error.str()}: check {hint}")
        elif code in UNREACHABLE:
            if self.recovered_at is not None:  # settling after a recovery: a flap of the same outage
                if self.flap_since is None:
                    self.flap_since = self.clock()
                    self.flaps += 1
            elif self.down_since is None:
                self.down_since = self.clock()
                log.warning("Kafka unreachable (%s); retrying until it is back", error.str())
        elif code not in self._other_logged:
            self._other_logged.add(code)
            log.warning("Kafka client error: %s", error.str())

    def working(self, since: float | None = None) -> None:
        """A request to the cluster just succeeded; ``since``: when it was made (this log's clock). A
        request made before the outage began (its answer and the first failure crossed) does not end it."""
        now = self.clock()
        if since is not None and self.down_since is not None and since < self.down_since:
            return
        if self.down_since is not None and self.recovered_at is None:
            log.warning("Kafka reachable again after %.1fs", now - self.down_since)
            self.recovered_at = self.stable_since = now
        elif self.flap_since is not None:
            self.flap_since, self.stable_since = None, now
        self.settle()

    def settle(self) -> None:
        """Close the outage once the cluster has answered for ``settle_s`` since the last flap; a
        flap lasting ``settle_s`` becomes an outage of its own (the loop calls this every turn)."""
        if self.recovered_at is None:
            return
        now = self.clock()
        if self.flap_since is not None:
            if now - self.flap_since >= self.settle_s:
                log.warning("Kafka unreachable again (%d interruption(s) since it came back); retrying "
                            "until it is back", self.flaps)
                self.down_since, self.recovered_at, self.flap_since, self.flaps = self.flap_since, None, None, 0
            return
        if now - self.stable_since >= self.settle_s:
            if self.flaps:
                log.warning("Kafka connections settled after %d more interruption(s) while the broker came back",
                            self.flaps)
            self.down_since = self.recovered_at = self.stable_since = None
            self.flaps = 0
