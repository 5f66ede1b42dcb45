"""How the join behaves: label timeouts (per model), expiry grace, tombstones, idleness and clock skew."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class JoinConfig:
    label_timeout_ms: int = 7 * 86_400_000
    expiry_grace_ms: int = 10 * 60_000
    tombstone_ttl_ms: int | None = None
    #: Per-model label timeouts (from rollout specs); others use ``label_timeout_ms``.
    model_label_timeout_ms: dict[str, int] = field(default_factory=dict)
    #: Processing time a source read to its end must stay silent before it stops holding stream
    #: time back (see :mod:`evaluators.idleness`).
    idle_after_ms: int = 5_000
    #: How far ahead of the worker's clock an event may move its source's time: an event stamped
    #: later (a client clock running ahead) moves it only this far, and is counted.
    max_future_skew_ms: int = 5 * 60_000

    def timeout_for(self, model: str) -> int:
        return self.model_label_timeout_ms.get(model, self.label_timeout_ms)

    def settle_ms(self, model: str) -> int:
        """How long after an event time every response up to it has joined or expired."""
        return self.timeout_for(model) + self.expiry_grace_ms + 1

    def tombstone_for(self, model: str) -> int:
        return self.tombstone_ttl_ms if self.tombstone_ttl_ms is not None else self.timeout_for(model)

    def longest_life_ms(self) -> int:
        """An upper bound on how long (stream time) a request's state lives: expiry plus tombstone."""
        timeouts = [self.label_timeout_ms, *self.model_label_timeout_ms.values()]
        return (
            max(timeouts)
            + self.expiry_grace_ms
            + max(self.tombstone_for(m) for m in ["", *self.model_label_timeout_ms])
        )
