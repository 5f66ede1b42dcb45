"""The evaluator's faust-streaming app: reads the contract's input topics in batches, decodes every
record through :mod:`schemas.codec`, dead-letters the bad ones and hands the good ones on, each with
the faust event it came from (partition, offset).

Every consumer of the evaluator goes through :class:`IngestAgent`, so a malformed record is treated
the same way everywhere: sent to ``evaluator.dlq`` with its original key and bytes and the contract's
headers, counted in ``shadowcanary_dead_letters_total{topic,reason}``, and processing goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import faust
from pydantic import BaseModel

from schemas.catalog import model_for_topic
from schemas.dead_letter import DeadLetter, decode_or_dead_letter
from schemas.topics import DEAD_LETTER_MAX_BYTES, Topics
from streams.config import KafkaSettings
from streams.telemetry import DEAD_LETTERS, RECORDS_INGESTED

#: Called with a batch of decoded messages, each with its event (``event.message.topic`` etc.).
BatchHandler = Callable[[list[tuple[faust.EventT, BaseModel]]], Awaitable[None]]

INPUT_TOPICS = ("inference.requests", "inference.responses", "inference.labels")


@dataclass
class AppOptions:
    app_id: str = "shadowcanary-evaluator"
    store: str = "memory://"
    batch_size: int = 1000
    batch_within: float = 0.25
    web_port: int | None = None
    data_dir: str | None = None
    max_poll_records: int = 5000
    stream_buffer: int = 20_000


def create_app(settings: KafkaSettings, options: AppOptions = AppOptions()) -> faust.App:
    kwargs: dict[str, Any] = dict(
        broker=settings.faust_broker_url(),
        broker_credentials=_faust_credentials(settings),
        store=options.store,
        topic_replication_factor=1,
        topic_allow_declare=True,  # faust creates its changelogs; the contract topics already exist
        consumer_auto_offset_reset="earliest",
        web_enabled=options.web_port is not None,
        web_port=options.web_port or 6066,
        producer_partitioner=None,  # aiokafka's default: Kafka's murmur2, as the contract requires
        producer_max_request_size=DEAD_LETTER_MAX_BYTES,  # dead letters keep oversize originals
        # Throughput: fetch and buffer enough that batches fill before `batch_within` runs out.
        broker_max_poll_records=options.max_poll_records,
        stream_buffer_maxsize=options.stream_buffer,
        consumer_max_fetch_size=8 * 1024 * 1024,
        producer_linger=0.005,
    )
    if options.data_dir:
        kwargs["datadir"] = options.data_dir
    return faust.App(options.app_id, **kwargs)


def _faust_credentials(settings: KafkaSettings) -> Any:
    if settings.security_protocol == "PLAINTEXT":
        return None
    from faust.auth import SASLCredentials, SSLCredentials

    if settings.sasl_mechanism:
        return SASLCredentials(username=settings.sasl_username or "",
                               password=settings.sasl_password.get_secret_value() if settings.sasl_password else "",
                               mechanism=settings.sasl_mechanism,
                               ssl_context=settings.ssl_context() if settings.security_protocol == "SASL_SSL" else None)
    return SSLCredentials(settings.ssl_context())


def raw_topic(app: faust.App, name: str) -> faust.TopicT:
    """A topic of undecoded bytes (the codec decodes; faust's serializers stay out of the way)."""
    return app.topic(name, key_type=None, value_type=None, key_serializer="raw", value_serializer="raw")


class IngestAgent:
    """One agent over one or more input topics (co-partitioned ones together): decodes each batch;
    bad records go to the dead-letter topic; good ones go to ``handler`` with their events."""

    def __init__(self, app: faust.App, topics: Topics, contract_names: Sequence[str], handler: BatchHandler,
                 options: AppOptions, name: str | None = None) -> None:
        self.handler = handler
        self.options = options
        self.models = {topics.name(n): model_for_topic(n) for n in contract_names}
        self.contract_names = {topics.name(n): n for n in contract_names}
        self.dead_letter_topic = raw_topic(app, topics.dlq)
        self._ingested = {full: RECORDS_INGESTED.labels(n) for full, n in self.contract_names.items()}
        source = app.topic(*self.models, key_type=None, value_type=None, key_serializer="raw",
                           value_serializer="raw")
        app.agent(source, name=name or f"ingest-{'-'.join(contract_names)}")(self._run)

    async def _run(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(self.options.batch_size, within=self.options.batch_within):
            good, dead = self.decode(events)
            for letter in dead:
                await self.publish_dead_letter(letter)
            if good:
                await self.handler(good)

    def decode(self, events: Sequence[faust.EventT]) -> tuple[list[tuple[faust.EventT, BaseModel]], list[DeadLetter]]:
        good: list[tuple[faust.EventT, BaseModel]] = []
        dead: list[DeadLetter] = []
        for event in events:
            message = event.message
            decoded, letter = decode_or_dead_letter(self.models[message.topic], message.value, message.key,
                                                    message.topic, message.partition, message.offset)
            if letter is not None:
                dead.append(letter)
            else:
                self._ingested[message.topic].inc()
                good.append((event, decoded))
        return good, dead

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        DEAD_LETTERS.labels(self.contract_names[letter.source_topic], letter.reason).inc()
        await self.dead_letter_topic.send(key=letter.key, value=letter.value, headers=letter.headers())
