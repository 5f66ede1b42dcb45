"""``shadowcanary demo``: the end-to-end tour on the local broker (or KAFKA_BOOTSTRAP's cluster)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import click
from confluent_kafka import Consumer

from schemas import InferenceRequest, decode
from streams.admin import create_topics
from streams.cli_context import Context, pass_context
from streams.cli_broker import local_broker
from streams.config import KafkaSettings
from streams.errors import KafkaUnavailableError
from streams.producer import ContractProducer


def _round_trip(settings: KafkaSettings) -> InferenceRequest:
    """Publish one InferenceRequest and read it back from the broker."""
    topic = f"{settings.topic_prefix}inference.requests"
    request = InferenceRequest(
        request_id=f"demo-{uuid.uuid4()}", model="demo-model", ts=datetime.now(timezone.utc),
        features={"amount": 42.5, "country": "NL", "first_purchase": True}, subject="user-7",
        attributes={"region": "eu"},
    )
    producer = ContractProducer(settings)
    producer.send(topic, request.request_id, request)
    producer.flush()
    consumer = Consumer(settings.confluent_config(**{
        "group.id": f"shadowcanary-demo-{uuid.uuid4()}", "auto.offset.reset": "latest",
        "enable.auto.commit": False}))
    try:
        consumer.subscribe([topic])
        # The group starts at the end: re-publish until our consumer is positioned and sees it.
        deadline = time.monotonic() + 30
        resent_at = 0.0
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() == request.request_id.encode():
                return decode(InferenceRequest, msg.value())
            if consumer.assignment() and time.monotonic() - resent_at > 2:
                producer.send(topic, request.request_id, request)
                producer.flush()
                resent_at = time.monotonic()
    finally:
        consumer.close()
    raise KafkaUnavailableError("the demo event did not come back within 30 s")


@click.command()
@click.option("--keep-broker/--stop-broker", default=True, show_default=True,
              help="Leave the local broker running afterwards.")
@pass_context
def demo(ctx: Context, keep_broker: bool) -> None:
    """Bring up the local broker, create the topics and round-trip a contract event."""
    started = None
    if not ctx.bootstrap_configured:
        started = local_broker()
        status = started.up()
        click.echo(f"broker: {status.describe()}")
        ctx.use_bootstrap(status.bootstrap)
    settings = ctx.settings
    created, existing = create_topics(settings)
    click.echo(f"topics: {len(created)} created, {len(existing)} already there, on {settings.bootstrap_servers}")
    echoed = _round_trip(settings)
    click.echo(f"round trip: InferenceRequest {echoed.request_id} for model {echoed.model} "
               f"came back intact with {len(echoed.features)} features")
    if started is not None and not keep_broker:
        click.echo(started.down())
