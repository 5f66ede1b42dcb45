"""Kafka plumbing shared by every part: connection settings, topic admin, producers, reading a topic to
its end, and the local single-node broker."""

from streams.kafka.admin import TopicLayout, create_topics
from streams.kafka.local_broker import LocalBroker
from streams.kafka.producer import ContractProducer
from streams.kafka.settings import KafkaSettings, load_settings

__all__ = ["ContractProducer", "KafkaSettings", "LocalBroker", "TopicLayout", "create_topics", "load_settings"]
