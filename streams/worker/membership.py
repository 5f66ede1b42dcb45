"""Notice a group consumer that is out of its group and not joining it again.

After a broker restart, librdkafka's consumer can keep its group coordinator on the broker handle
that went away (librdkafka #5511, the consumer's side of what :mod:`streams.worker.deadline` works
around for the producer): its partitions are lost, and it never joins again, while ``consume``
keeps returning nothing as if all were well. Seen here in the broker-outage test: a worker alive and
idle for minutes, its group empty on the broker.

:class:`MembershipWatch` asks the broker, while the loop holds no partition, whether the group
lists the consumer's member id (every ``every_s``). A consumer absent for ``patience_s`` in a row,
as the broker says (an unreachable broker says nothing, and counts for nothing), is out for good:
the loop replaces it. A member the group lists but gives no partition (more workers than
partitions) is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient

from streams.kafka.admin import admin_client
from streams.kafka.settings import KafkaSettings

log = logging.getLogger("shadowcanary.worker")

#: How long a consumer may be out of its group, as the broker says, before it is replaced.
PATIENCE_S = 60.0
#: How often the broker is asked while the loop holds no partition.
EVERY_S = 10.0


class MembershipWatch:
    """Whether a group consumer has been out of its group, as the broker says, for ``patience_s``."""

    def __init__(self, settings: KafkaSettings, group_id: str, patience_s: float = PATIENCE_S,
                 every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.group_id = settings, group_id
        self.patience_s, self.every_s = patience_s, every_s
        self._clock = clock
        self._admin: AdminClient | None = None
        self._asked_at = float("-inf")
        #: Since when the broker has said the consumer is not a member (``None``: it is, or unknown).
        self.out_since: float | None = None

    def out_for_good(self, consumer: Consumer, holds_partitions: bool) -> bool:
        """True when the consumer should be replaced. Cheap unless the loop holds no partition."""
        if holds_partitions:
            self.out_since = None
            return False
        now = self._clock()
        if now - self._asked_at >= self.every_s:
            self._asked_at = now
            listed = self._listed(consumer.memberid())  # None: the broker did not answer, nothing learnt
            if listed:
                self.out_since = None
            elif listed is False and self.out_since is None:
                self.out_since = now
        return self.out_since is not None and now - self.out_since >= self.patience_s

    def replaced(self) -> None:
        """The loop replaced its consumer: the count starts again."""
        self.out_since = None
        self._asked_at = float("-inf")

    def _listed(self, member_id: str | None) -> bool | None:
        """Whether the group lists ``member_id``; ``None`` if the broker could not say."""
        if self._admin is None:
            self._admin = admin_client(self.settings)
        try:
            description = self._admin.describe_consumer_groups([self.group_id],
                                                               request_timeout=5)[self.group_id].result(10)
        except (KafkaException, TimeoutError) as exc:
            log.debug("describing group %s: %r", self.group_id, exc)
            return None
        return bool(member_id) and any(member.member_id == member_id for member in description.members)


__all__ = ["EVERY_S", "MembershipWatch", "PATIENCE_S"]
