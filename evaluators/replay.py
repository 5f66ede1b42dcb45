"""The evaluator over recorded events, without a broker: the same join, metrics, drift and policy
code as the stream, in event-time order, on a simulated clock.

One partition holds everything (a window's numbers are the same however the stream split them:
partials merge exactly). Events go through in batches; after each batch the closed windows are
merged and published, drift is judged on them, and the rollout engine looks at the running totals
with the clock at the batch's latest event time. A spec starts at the first event.

>>> from schemas import InferenceRequest, InferenceResponse, GroundTruth
>>> from evaluators.metrics import MetricsConfig
>>> from evaluators.join import JoinConfig
>>> replay = Replay(JoinConfig(label_timeout_ms=1000, expiry_grace_ms=0), MetricsConfig(window_ms=1000))
>>> replay.run([InferenceRequest(request_id="r", model="m", ts=10),
...             InferenceResponse(request_id="r", model="m", version="v1", role="primary", ts=20, prediction=1),
...             GroundTruth(request_id="r", model="m", ts=30, label=1)])
>>> [(s.version, s.responses, s.labelled) for s in replay.snapshots]
[('v1', 1, 1)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from evaluators.accumulators import evaluator_accumulator
from evaluators.join import Incoming, JoinConfig, JoinPartition
from evaluators.merging import PartialsMerger, heartbeat_partial
from evaluators.metrics import MetricsConfig
from evaluators.policy.drift_guardrails import DriftView
from evaluators.policy.engine import Output, RolloutEngine
from evaluators.store import DictStore
from schemas.control import Decision, RoutingCommand
from schemas.inference import GroundTruth, InferenceRequest, InferenceResponse
from schemas.monitoring import Alert, MetricsSnapshot
from schemas.rollout import RolloutSpec
from schemas.signing import Signer
from schemas.types import epoch_ms

SOURCES = {InferenceRequest: "requests", InferenceResponse: "responses", GroundTruth: "labels"}
#: Far past every event: lets every window close and every request expire at the end.
END_OF_TIME = 2**62
BATCH = 2000


@dataclass
class Replay:
    join_config: JoinConfig
    metrics_config: MetricsConfig
    specs: list[RolloutSpec] = field(default_factory=list)
    signer: Signer | None = None
    batch: int = BATCH
    #: Called with each batch's event count (progress bars).
    progress: Callable[[int], None] = lambda n: None
    snapshots: list[MetricsSnapshot] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    commands: list[RoutingCommand] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    def __post_init__(self) -> None:
        settle = self.join_config.settle_ms
        self._join = JoinPartition(DictStore(), self.join_config, "replay",
                                   evaluator_accumulator(self.metrics_config, settle))
        self._merger = PartialsMerger(self.metrics_config, settle, partitions=1)
        self._engine = RolloutEngine(signer=self.signer)
        self._offsets = {name: -1 for name in SOURCES.values()}
        self._started = False
        self.clock_ms = 0

    def run(self, events: Iterable[InferenceRequest | InferenceResponse | GroundTruth]) -> None:
        """Replay ``events`` (in event-time order) to the end, then let time run out."""
        pending: list[Incoming] = []
        for event in events:
            source = SOURCES[type(event)]
            self._offsets[source] += 1
            pending.append(Incoming(event, source, self._offsets[source]))
            if len(pending) >= self.batch:
                self._step(pending)
                pending = []
        if pending:
            self._step(pending)
        self._finish()

    # -- inside --------------------------------------------------------------------------------------
    def _step(self, incoming: list[Incoming], idle: Iterable[str] = ()) -> None:
        latest = max(epoch_ms(i.message.ts) for i in incoming) if incoming else END_OF_TIME
        if not self._started:
            self._started = True
            self.clock_ms = min(epoch_ms(i.message.ts) for i in incoming)
            for spec in self.specs:
                self._emit(self._engine.start(spec, self.clock_ms, self._merger.guardrail_totals(),
                                              rollout_id=f"{spec.model}@replay"))
        self._join.process(incoming, idle_sources=idle, sources=list(SOURCES.values()))
        self._publish()
        self.clock_ms = max(self.clock_ms, min(latest, END_OF_TIME - 1))
        self._look()
        self.progress(len(incoming))

    def _publish(self) -> None:
        state = self._join.last_state
        for window in state["acc"]["metrics"]["closed"]:
            self._merger.final(0, window)
        self._merger.heartbeat(0, heartbeat_partial(0, state, "replay"))
        self.snapshots += self._merger.ready()
        self.alerts += self._merger.alerts
        self._merger.alerts = []

    def _look(self) -> None:
        if not self._engine.active():
            return
        drift = DriftView(dict(self._merger.drift.latest), self._merger.drift.firing())
        self._emit(self._engine.tick(self.clock_ms, self._merger.guardrail_totals(), drift))

    def _finish(self) -> None:
        """Every source caught up: stream time runs on until every window closed."""
        if not self._started:
            return
        for _ in range(2):  # expire (and close every window), then drop the tombstones
            self._join.process([], idle_sources=list(SOURCES.values()), sources=list(SOURCES.values()),
                               advance_to=END_OF_TIME)
            self._publish()
        self._look()

    def _emit(self, outputs: list[Output]) -> None:
        for output in outputs:
            if output.topic == "control":
                self.commands.append(output.message)
                self._engine.observe_command(output.message)
            elif output.topic == "decisions":
                self.decisions.append(output.message)
            else:
                self.alerts.append(output.message)
