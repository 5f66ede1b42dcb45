"""The inference logger: publish InferenceRequest and InferenceResponse events without ever
blocking or failing the request that produced them.

Each ``log_*`` call validates the event (pydantic, a few microseconds), encodes it (orjson) and hands
it to librdkafka's bounded in-memory queue (``max_queued`` messages), which batches (``linger.ms``),
compresses and delivers from its own threads with an idempotent producer and Kafka's murmur2
partitioner on ``request_id`` (so a request's events share a partition across the three topics).
Nothing in the call waits for the network. When the queue is full, when an event is invalid, or when
delivery finally fails, the event is dropped and counted: ``shadowcanary_logger_events_total
{topic, outcome}`` with outcomes ``queued``, ``delivered``, ``dropped_queue_full``,
``dropped_invalid``, ``failed``; :attr:`InferenceLogger.counts` holds the same numbers.

    logger = InferenceLogger(settings)
    logger.log_request({"request_id": rid, "model": "fraud", "ts": now_ms, "features": x, "subject": uid})
    logger.log_response({"request_id": rid, "model": "fraud", "version": "v2", "role": "canary", ...})
    ...
    logger.close()   # flushes what is queued
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError
from prometheus_client import Counter

from schemas.codec import encode
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.topics import Topics
from streams.kafka.producer import make_producer
from streams.kafka.settings import KafkaSettings

log = logging.getLogger("shadowcanary.logger")

EVENTS = Counter("shadowcanary_logger_events", "Inference events the logger handled, by outcome.",
                 ["topic", "outcome"])


class InferenceLogger:
    """Asynchronous, lossy-but-counted publisher for a serving process's inference events."""

    def __init__(self, settings: KafkaSettings, topics: Topics | None = None, max_queued: int = 100_000,
                 linger_ms: int = 20) -> None:
        self.topics = topics or Topics(settings.topic_prefix)
        self.counts: Tally[tuple[str, str]] = Tally()
        self._lock = threading.Lock()
        self._producer = make_producer(settings, **{
            "linger.ms": linger_ms, "queue.buffering.max.messages": max_queued,
            "message.timeout.ms": 120_000, "on_delivery": self._delivered})
        self._unfolded: dict[str, int] = {}
        self._children: dict[tuple[str, str], Any] = {}
        self._closing = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="shadowcanary-logger", daemon=True)
        self._poller.start()

    def log_request(self, request: InferenceRequest | Mapping[str, Any]) -> bool:
        """Queue a request event; ``False`` if it was dropped (and counted)."""
        return self._log(self.topics.requests, InferenceRequest, request)

    def log_response(self, response: InferenceResponse | Mapping[str, Any]) -> bool:
        """Queue a response event; ``False`` if it was dropped (and counted)."""
        return self._log(self.topics.responses, InferenceResponse, response)

    def log_label(self, label: GroundTruth | Mapping[str, Any]) -> bool:
        """Queue a label (``GroundTruth``); ``False`` if it was dropped (and counted)."""
        return self._log(self.topics.labels, GroundTruth, label)

    def _log(self, topic: str, model: type, event: Any) -> bool:
        try:
            if not isinstance(event, model):
                event = model.model_validate(event)
            value = encode(event)
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            self._count(topic, "dropped_invalid")
            log.warning("inference logger: dropped an invalid %s: %s", model.__name__, exc)
            return False
        try:
            self._producer.produce(topic, value=value, key=event.request_id)
        except BufferError:
            self._count(topic, "dropped_queue_full")
            return False
        self._count(topic, "queued")
        return True

    def _count(self, topic: str, outcome: str, n: int = 1) -> None:
        key = (topic, outcome)
        with self._lock:  # the caller's thread and the poller both count
            self.counts[key] += n
        child = self._children.get(key)
        if child is None:  # labels() costs a microsecond; the child is kept
            child = self._children[key] = EVENTS.labels(topic, outcome)
        child.inc(n)

    def _delivered(self, err: Any, msg: Any) -> None:  # librdkafka's delivery report, on the poller thread
        if err is None:
            # Only the poller writes here; folded into the shared counts once per poll, so the
            # serving threads rarely wait on the GIL or a lock for it.
            self._unfolded[msg.topic()] = self._unfolded.get(msg.topic(), 0) + 1
        else:
            self._count(msg.topic(), "failed")
            if err.code() not in (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):  # close() says those once
                log.warning("inference logger: %s not delivered: %s", msg.topic(), err.str())

    def _fold_delivered(self) -> None:
        unfolded, self._unfolded = self._unfolded, {}
        for topic, n in unfolded.items():
            self._count(topic, "delivered", n)

    def _poll(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)
            self._fold_delivered()

    def outcome(self, outcome: str) -> int:
        """How many events (all topics) ended with ``outcome``."""
        return sum(n for (_, o), n in self.counts.items() if o == outcome)

    def close(self, timeout: float = 30.0) -> int:
        """Deliver what is queued (up to ``timeout``); returns how many events could not be, each
        counted as ``failed`` on its topic.

        What ``timeout`` leaves is purged, so each event gets its delivery report: librdkafka's queue
        length, which ``flush`` returns, also counts its own pending requests and events, not only
        messages."""
        self._closing.set()
        self._poller.join()
        failed_before = self.outcome("failed")
        if self._producer.flush(timeout):
            self._producer.purge(in_queue=True, in_flight=True)
            self._producer.flush(0)  # serves the purged messages' delivery reports
        self._fold_delivered()
        failed = self.outcome("failed") - failed_before
        if failed:
            log.warning("inference logger: %d events not delivered when it closed", failed)
        return failed
