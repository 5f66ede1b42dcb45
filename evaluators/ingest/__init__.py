"""Serving tools' own log records as contract events (pure: no Kafka): KServe's payload logger
CloudEvents (:mod:`~evaluators.ingest.cloudevents`), the Open Inference Protocol's tensors
(:mod:`~evaluators.ingest.oip`), and the mapping that turns either, or any JSON log, into requests
and responses (:mod:`~evaluators.ingest.translate`)."""

from evaluators.ingest.errors import BadRecord
from evaluators.ingest.translate import ExternalRecord, Translator

__all__ = ["BadRecord", "ExternalRecord", "Translator"]
