"""The evaluator over recorded events, without a broker: the same join, metrics, drift and policy
code as the stream, in event-time order, on a simulated clock.

One partition holds everything (a window's numbers are the same however the stream split them:
partials merge exactly).

**The simulated clock** stands for the worker's: the latest event time read so far, except for
events stamped far ahead by a client whose clock runs ahead. Such an event (more than
``JoinConfig.max_future_skew_ms`` ahead of the clock) is held back; if events near the clock follow
it, or the replay ends, it was a clock running ahead and is applied with the clock where it was (the
join bounds time by it and counts the event, as the stream does with the worker's clock). If more
than ``SKEW_OUTLIERS`` such events pile up, traffic resumed after a gap: the clock moves to them.

Events go through in batches; after each batch the closed windows are merged and published, drift is
judged on them, and the rollout engine looks at the running totals with the clock at the batch's
latest event time. A spec starts at the first event.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from evaluators.accumulators import closed_windows, evaluator_accumulator
from evaluators.integration_checks import VersionShape
from evaluators.join import Incoming, JoinConfig, JoinPartition
from evaluators.merging import PartialsMerger, heartbeat_partial
from evaluators.metrics import MetricsConfig
from evaluators.policy.engine import Output, RolloutEngine
from evaluators.segments import with_spec_segments
from evaluators.store import DictStore
from schemas.control import Decision, RoutingCommand
from schemas.fast_codec import Event
from schemas.monitoring import Alert, MetricsSnapshot
from schemas.rollout import RolloutSpec
from schemas.signing import Signer

#: The source name of each kind of event.
SOURCES = {"request": "requests", "response": "responses", "label": "labels"}
#: Far past every event: lets every window close and every request expire at the end.
END_OF_TIME = 2**62
BATCH = 2000
#: More events than this, all far ahead of the simulated clock and in a row, are traffic resuming
#: after a gap, not a client clock running ahead.
SKEW_OUTLIERS = 10


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
        if any(spec.segments for spec in self.specs):  # what the specs judge by is kept
            self.metrics_config = replace(self.metrics_config,
                                          segments=with_spec_segments(self.metrics_config.segments, self.specs))
        settle = self.join_config.settle_ms
        self._join = JoinPartition(DictStore(), self.join_config, "replay",
                                   evaluator_accumulator(self.metrics_config, settle))
        self._merger = PartialsMerger(self.metrics_config, settle, partitions=1,
                                      skew_tolerance_ms=self.join_config.max_future_skew_ms)
        self._engine = RolloutEngine(signer=self.signer, tracked_segments=self.metrics_config.segments_of)
        self._offsets = {name: -1 for name in SOURCES.values()}
        self._started = False
        #: The simulated worker clock (see the module docstring); None before the first event.
        self.clock_ms: int | None = None

    def run(self, events: Iterable[Event]) -> None:
        """Replay ``events`` (in event-time order) to the end, then let time run out."""
        pending: list[Incoming] = []
        ahead: list[Event] = []  # held back (see above)
        tolerance = self.join_config.max_future_skew_ms
        for event in events:
            ts = event.ts_ms
            if self.clock_ms is None:
                self.clock_ms = ts
            if ts > self.clock_ms + tolerance:
                ahead.append(event)
                if len(ahead) <= SKEW_OUTLIERS:
                    continue
                self.clock_ms = max(e.ts_ms for e in ahead)  # traffic resumed after a gap
                ready, ahead = ahead, []
            else:  # an event near the clock: any held before it came from clocks running ahead
                ready, ahead = ahead + [event], []
                self.clock_ms = max(self.clock_ms, ts)
            pending += [self._incoming(e) for e in ready]
            if len(pending) >= self.batch:
                self._step(pending)
                pending = []
        pending += [self._incoming(held) for held in ahead]  # nothing followed them: clocks ahead
        if pending:
            self._step(pending)
        self._finish()

    def shapes(self, model: str) -> dict[str, VersionShape]:
        """What flowed per version of ``model`` (see :mod:`evaluators.integration_checks`)."""
        return self._merger.shapes.shapes_of(model)

    def _incoming(self, event: Event) -> Incoming:
        source = SOURCES[event.kind]
        self._offsets[source] += 1
        return Incoming(event, source, self._offsets[source])

    # -- inside --------------------------------------------------------------------------------------
    def _step(self, incoming: list[Incoming], idle: Iterable[str] = ()) -> None:
        if not self._started:
            self._started = True
            first = min(i.message.ts_ms for i in incoming)
            for spec in self.specs:
                self._emit(self._engine.start(spec, first, self._merger.guardrail_totals(),
                                              rollout_id=f"{spec.model}@replay"))
        self._join.process(incoming, idle_sources=idle, sources=list(SOURCES.values()), now_ms=self.clock_ms)
        self._publish()
        self._look()
        self.progress(len(incoming))

    def _publish(self) -> None:
        for window in closed_windows(self._join.accumulated()):
            self._merger.final(0, window)
        state = self._join.last_state
        assert state is not None  # a batch was just applied
        self._merger.heartbeat(0, heartbeat_partial(0, state, "replay"))
        self.snapshots += self._merger.ready()
        self.alerts += self._merger.alerts
        self._merger.alerts = []

    def _look(self) -> None:
        if not self._engine.active() or self.clock_ms is None:
            return
        self._emit(self._engine.tick(self.clock_ms, self._merger.guardrail_totals(), self._merger.monitor_view()))

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
