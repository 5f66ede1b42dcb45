"""The pure join: semantics on small scenarios, and exact counts across simulated crashes."""

from __future__ import annotations

import random
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.accumulators import evaluator_accumulator
from evaluators.counts import MAX_FUTURE_SKEW, JoinCounts
from evaluators.facts import AgreementFact, ClockSkew, Duplicate, Expired, JoinedRecord, LateLabel, UnmatchedLabel
from evaluators.join import Incoming, JoinConfig, JoinPartition, caught_up_sources, fence_after, request_key
from evaluators.metrics import MetricsConfig
from evaluators.store import DictStore
from evaluators.windows import running_totals
from schemas import GroundTruth, InferenceRequest, InferenceResponse, encode
from schemas.fast_codec import decode_fast

MIN = 60_000
CONFIG = JoinConfig(label_timeout_ms=10 * MIN, expiry_grace_ms=MIN)


def req(rid: str, ts: int, **features: Any) -> InferenceRequest:
    return InferenceRequest(request_id=rid, model="m", ts=ts, features=features)


def resp(
    rid: str, version: str, role: str, ts: int, prediction: Any = 1, error: str | None = None
) -> InferenceResponse:
    return InferenceResponse(request_id=rid, model="m", version=version, role=role, ts=ts,
                             prediction=None if error else prediction, error=error, latency_ms=3.0)


def label(rid: str, ts: int, value: Any = 1) -> GroundTruth:
    return GroundTruth(request_id=rid, model="m", ts=ts, label=value, outcomes={"revenue": 2.0})


class Feed:
    """Numbers events per source like a partition's offsets."""

    def __init__(self) -> None:
        self.offsets: dict[str, int] = {}

    def __call__(self, *messages) -> list[Incoming]:
        out = []
        for m in messages:
            source = type(m).__name__
            self.offsets[source] = self.offsets.get(source, -1) + 1
            out.append(Incoming(m, source, self.offsets[source]))
        return out


def new_join(store: DictStore | None = None, run: str = "run-a", config: JoinConfig = CONFIG) -> JoinPartition:
    return JoinPartition(store if store is not None else DictStore(snapshot=True), config, run,
                         JoinCounts.from_state)


def counts(join: JoinPartition) -> dict:
    return join.accumulator().by_version()


def test_label_before_response_and_several_versions():
    feed, join = Feed(), new_join()
    facts = join.process(feed(label("r1", 5_000, 1), req("r1", 1_000, amount=3.0)))
    facts += join.process(feed(resp("r1", "v1", "primary", 1_000, 1), resp("r1", "v2", "canary", 1_000, 0)))
    joined = {f.version: f for f in facts if isinstance(f, JoinedRecord)}
    assert set(joined) == {"v1", "v2"}
    assert joined["v2"].label == 1 and joined["v2"].prediction == 0
    assert joined["v1"].features == {"amount": 3.0} and joined["v1"].outcomes == {"revenue": 2.0}
    assert counts(join)[("m", "v2", "canary")]["joined"] == 1


def test_duplicates_are_counted_once():
    feed, join = Feed(), new_join()
    join.process(feed(resp("r1", "v1", "primary", 0), resp("r1", "v1", "primary", 0)))
    facts = join.process(feed(label("r1", 10), label("r1", 20), req("r1", 0), req("r1", 0)))
    assert [f.kind for f in facts if isinstance(f, Duplicate)] == ["label", "request"]
    c = counts(join)[("m", "v1", "primary")]
    assert (c["responses"], c["joined"]) == (1, 1)
    models = join.accumulator().models["m"]
    assert (models["duplicate_responses"], models["duplicate_labels"], models["duplicate_requests"]) == (1, 1, 1)


def test_late_label_is_counted_late_not_joined():
    feed, join = Feed(), new_join()
    facts = join.process(feed(resp("r1", "v1", "primary", 0), label("r1", 11 * MIN)))
    assert not any(isinstance(f, JoinedRecord) for f in facts)
    # When time passes r1's expiry (its latest event, 11 min, + timeout + grace = 22 min, on every
    # source): the response expired, the label was late.
    facts = join.process(feed(resp("r2", "v1", "primary", 23 * MIN), label("r2", 23 * MIN)))
    late = [f for f in facts if isinstance(f, LateLabel)]
    assert len(late) == 1 and late[0].delay_ms == 11 * MIN
    assert [f.version for f in facts if isinstance(f, Expired)] == ["v1"]


def test_never_labelled_expires_once_and_late_label_after_expiry_is_late():
    feed, join = Feed(), new_join()
    join.process(feed(resp("r1", "v1", "primary", 0), resp("r1", "v3", "shadow", 0)))
    # Another request moves time past r1's time + timeout + grace.
    facts = join.process(feed(resp("r2", "v1", "primary", 12 * MIN)))
    assert sorted(f.version for f in facts if isinstance(f, Expired)) == ["v1", "v3"]
    facts = join.process(feed(label("r1", 12 * MIN)))
    assert [type(f).__name__ for f in facts if isinstance(f, LateLabel)] == ["LateLabel"]
    assert not any(isinstance(f, (Expired, JoinedRecord)) for f in facts)
    assert counts(join)[("m", "v1", "primary")]["expired"] == 1


def test_expiry_waits_for_a_later_response_of_the_same_request():
    feed, join = Feed(), new_join()
    join.process(feed(req("r1", 0)))
    join.process(feed(resp("r1", "v1", "primary", 9 * MIN)))
    facts = join.process(feed(resp("r9", "v1", "primary", 12 * MIN)))  # r1's first event is due, v1 is not
    assert not any(isinstance(f, Expired) for f in facts)
    facts = join.process(feed(label("r1", 18 * MIN)))
    assert any(isinstance(f, JoinedRecord) and f.request_id == "r1" for f in facts)


def test_tombstones_are_deleted_after_their_ttl():
    feed, join = Feed(), new_join()
    join.process(feed(resp("r1", "v1", "primary", 0)))
    join.process(feed(resp("r2", "v1", "primary", 12 * MIN)))  # r1 expires, becomes a tombstone
    assert join.store.get(request_key("m", "r1")) is not None
    join.process(feed(resp("r3", "v1", "primary", 40 * MIN)))  # past the tombstone's ttl
    assert join.store.get(request_key("m", "r1")) is None


def test_unmatched_label_expires_as_unmatched():
    feed, join = Feed(), new_join()
    join.process(feed(label("r1", 0)))
    # The labels source has nothing newer; once it is caught up (idle), responses move time alone.
    facts = join.process(feed(resp("r2", "v1", "primary", 20 * MIN)), idle_sources=["GroundTruth"])
    assert [type(f) for f in facts if isinstance(f, UnmatchedLabel)] == [UnmatchedLabel]


def test_a_lagging_source_holds_time_back_until_it_catches_up():
    feed, join = Feed(), new_join()
    join.process(feed(resp("r1", "v1", "primary", 0), label("r0", 0)))
    # Responses run 30 minutes ahead while the labels source still lags at 0: nothing expires ...
    facts = join.process(feed(resp("r2", "v1", "primary", 30 * MIN)))
    assert not any(isinstance(f, Expired) for f in facts)
    # ... so r1's label, read late from its lagging topic but on time, still joins.
    facts = join.process(feed(label("r1", 5 * MIN)))
    assert any(isinstance(f, JoinedRecord) and f.request_id == "r1" for f in facts)
    # When the labels source is caught up, time follows the responses and r2 (due at 41 min) expires.
    facts = join.process(feed(resp("r3", "v1", "primary", 45 * MIN)), idle_sources=["GroundTruth"])
    assert [f.ts_ms for f in facts if isinstance(f, Expired)] == [30 * MIN]


def test_shadow_agreement_with_the_primary_in_any_order():
    feed, join = Feed(), new_join()
    facts = join.process(feed(resp("r1", "v3", "shadow", 0, prediction="cat")))
    assert not any(isinstance(f, AgreementFact) for f in facts)
    facts = join.process(feed(resp("r1", "v1", "primary", 0, prediction="dog")))
    [agreement] = [f for f in facts if isinstance(f, AgreementFact)]
    assert (agreement.version, agreement.primary_version) == ("v3", "v1")
    assert (agreement.prediction, agreement.primary_prediction) == ("cat", "dog")


def test_replayed_events_within_the_fence_are_skipped():
    feed, join = Feed(), new_join()
    batch = feed(resp("r1", "v1", "primary", 0), label("r1", 1))
    join.process(batch)
    assert join.process(batch) == []  # a replay after a restart: nothing counted twice, no duplicates
    assert counts(join)[("m", "v1", "primary")]["joined"] == 1


# --- exactness across crashes ------------------------------------------------------------------

@st.composite
def scenarios(draw) -> list:
    """A shuffled, duplicated stream over a few requests: some labelled on time, some late, some never."""
    n = draw(st.integers(1, 25))
    events = []
    for i in range(n):
        rid, t0 = f"r{i}", i * MIN // 2
        if draw(st.booleans()):
            events.append(req(rid, t0))
        for version, role in draw(st.lists(st.sampled_from([("v1", "primary"), ("v2", "canary"), ("v3", "shadow")]),
                                           unique=True, max_size=3)):
            events.append(resp(rid, version, role, t0 + draw(st.integers(0, 2000)),
                               error="boom" if draw(st.integers(0, 9)) == 0 else None))
        fate = draw(st.sampled_from(["on_time", "late", "never"]))
        if fate != "never":
            events.append(label(rid, t0 + (draw(st.integers(1, 5)) * MIN if fate == "on_time" else 25 * MIN)))
    events += draw(st.lists(st.sampled_from(events), max_size=5)) if events else []  # duplicates
    rng = random.Random(draw(st.integers(0, 10**6)))
    rng.shuffle(events)
    # Time moves on, on every source: everything settles.
    events += [req("tick", 200 * MIN), resp("tick", "v1", "primary", 200 * MIN), label("tick", 200 * MIN)]
    return events


def _batches(incoming: list[Incoming], rng: random.Random) -> list[list[Incoming]]:
    out, i = [], 0
    while i < len(incoming):
        size = rng.randint(1, 6)
        out.append(incoming[i:i + size])
        i += size
    return out


def _final_counts(join: JoinPartition) -> dict:
    return join.accumulator().to_state()


def simulate_with_crashes(incoming: list[Incoming], seed: int, crashes: int) -> JoinPartition:
    """Process ``incoming`` as the worker does, with ``crashes`` worker deaths at random points. A
    batch's writes and its input offsets commit together (one Kafka transaction) or not at all; some
    batches commit, the one in flight at a crash does not. A new run restores the store from the
    committed changelog and reads every event after the last committed offset again, batched
    differently."""
    rng = random.Random(seed)
    store = DictStore(snapshot=True)
    committed = 0  # events whose batch (writes and offsets) committed
    for run in range(crashes + 1):
        join = new_join(store, run=f"run-{run}")
        durable_writes = len(store.writes)
        batches = _batches(incoming[committed:], rng)
        last_run = run == crashes
        crash_after = len(batches) if last_run else rng.randint(0, len(batches))
        processed = committed
        for batch in batches[:crash_after]:
            join.process(batch)
            processed += len(batch)
            if rng.random() < 0.7:  # this batch's transaction commits
                durable_writes, committed = len(store.writes), processed
            else:  # it aborts: its writes are dropped and its events read again
                store.rebuild_from(store.writes[:durable_writes])
                processed = committed
                break
        if last_run and processed == len(incoming):
            return join
        store.rebuild_from(store.writes[:durable_writes])
    join = new_join(store, run="run-last")
    for batch in _batches(incoming[committed:], rng):
        join.process(batch)
    return join


@settings(max_examples=int(__import__("os").environ.get("JOIN_CRASH_EXAMPLES", "300")), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(scenarios(), st.integers(0, 10**6), st.integers(1, 3))
def test_counts_are_exact_across_crashes_and_aborted_batches(events, seed, crashes):
    incoming = Feed()(*events)
    reference = new_join(run="ref")
    for batch in _batches(incoming, random.Random(seed + 1)):
        reference.process(batch)
    join = simulate_with_crashes(incoming, seed, crashes)
    assert _final_counts(join) == _final_counts(reference)
    assert join.partition_state()["wm"] == reference.partition_state()["wm"]


def test_a_source_not_heard_from_holds_time_until_it_is_idle():
    feed, join = Feed(), new_join()
    sources = ["InferenceRequest", "InferenceResponse", "GroundTruth"]
    join.process(feed(resp("r1", "v1", "primary", 0)), sources=sources)
    # Requests run far ahead, but no label has been read yet: its topic may still hold old labels.
    facts = join.process(feed(req("r9", 500 * MIN)), idle_sources=["InferenceResponse"], sources=sources)
    assert not any(isinstance(f, Expired) for f in facts)
    facts = join.process(feed(label("r1", 2 * MIN)), sources=sources)
    assert any(isinstance(f, JoinedRecord) for f in facts)


def process_caught_up(join: JoinPartition, batch: list[Incoming], end_offsets: dict[str, int],
                      sources: list[str] | None = None) -> list:
    """Process ``batch`` with the sources ``end_offsets`` shows read to their end as idle."""
    fence = fence_after(join.partition_state()["fence"], batch)
    return join.process(batch, idle_sources=caught_up_sources(fence, end_offsets, sources), sources=sources)


def test_a_source_read_to_its_end_offset_is_idle():
    feed, join = Feed(), new_join()
    join.process(feed(label("r1", 0)))
    # The labels source's only record (offset 0) is applied: with end offset 1 it is caught up, so
    # responses move time alone; with end offset 5 it still holds time back.
    facts = process_caught_up(join, feed(resp("r2", "v1", "primary", 20 * MIN)),
                              {"GroundTruth": 5, "InferenceResponse": 1})
    assert not any(isinstance(f, UnmatchedLabel) for f in facts)
    facts = process_caught_up(join, feed(resp("r3", "v1", "primary", 21 * MIN)),
                              {"GroundTruth": 1, "InferenceResponse": 2})
    assert [type(f) for f in facts if isinstance(f, UnmatchedLabel)] == [UnmatchedLabel]


def test_end_offsets_observed_before_the_newest_record_read_prove_nothing():
    # The regression behind a two-worker test that expired everything: the end of the responses
    # was known from before the producer finished, and a far-future request arrived. An observation
    # that predates an applied record (requests end 1, but offset 1 is applied) is stale.
    feed, join = Feed(), new_join()
    sources = ["InferenceRequest", "InferenceResponse", "GroundTruth"]
    join.process(feed(req("r1", 0), resp("r1", "v1", "primary", 0), label("r0", 0)), sources=sources)
    facts = process_caught_up(join, feed(req("r9", 500 * MIN)),
                              {"InferenceRequest": 1, "InferenceResponse": 1, "GroundTruth": 1}, sources)
    assert not any(isinstance(f, Expired) for f in facts)
    # Observed after it: everything is read, time may jump to the far-future request.
    facts = process_caught_up(join, [], {"InferenceRequest": 2, "InferenceResponse": 1, "GroundTruth": 1}, sources)
    assert any(isinstance(f, Expired) for f in facts)


# --- several models sharing request ids ----------------------------------------------------------

#: Every event of the scenarios below lies within 20 minutes, under timeout + grace (40 minutes):
#: nothing expires before the final tick, so each response's fate (joined or late) is decided by its
#: own timestamps, never by another model's events moving time.
SHARED = JoinConfig(label_timeout_ms=10 * MIN, expiry_grace_ms=30 * MIN)
MODELS = ("fraud", "pricing")


def _event(kind: str, model: str, rid: str, ts: int, version: str = "", role: str = "", value: int = 1):
    if kind == "request":
        return InferenceRequest(request_id=rid, model=model, ts=ts, features={"amount": float(ts % 97)})
    if kind == "response":
        return InferenceResponse(request_id=rid, model=model, version=version, role=role, ts=ts,
                                 prediction=value, latency_ms=3.0 + ts % 5)
    return GroundTruth(request_id=rid, model=model, ts=ts, label=value)


@st.composite
def shared_id_streams(draw) -> dict[str, list]:
    """Per model, its own stream (in its own shuffled order) over request ids the models share."""
    streams: dict[str, list] = {model: [] for model in MODELS}
    for i in range(draw(st.integers(1, 20))):
        rid, t0 = f"r{i}", draw(st.integers(0, 5 * MIN))
        for model in draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=2, unique=True)):
            events = streams[model]
            if draw(st.booleans()):
                events.append(_event("request", model, rid, t0))
            for version, role in draw(st.lists(st.sampled_from([("v1", "primary"), ("v2", "canary"),
                                                                ("v3", "shadow")]), unique=True, max_size=3)):
                events.append(_event("response", model, rid, t0 + draw(st.integers(0, 2000)), version, role,
                                     draw(st.integers(0, 1))))
            fate = draw(st.sampled_from(["on_time", "late", "never"]))
            if fate != "never":
                delay = draw(st.integers(1, 9)) * MIN if fate == "on_time" else draw(st.integers(12, 15)) * MIN
                events.append(_event("label", model, rid, t0 + delay, value=draw(st.integers(0, 1))))
    for events in streams.values():
        events += draw(st.lists(st.sampled_from(events), max_size=3)) if events else []  # duplicates
        random.Random(draw(st.integers(0, 10**6))).shuffle(events)
    return streams


def _settled(events: list, models: tuple[str, ...]) -> list:
    """``events`` and, for each model, one event per source far later: everything settles."""
    tick = [_event(kind, model, "tick", 200 * MIN, "v1", "primary") for model in models
            for kind in ("request", "response", "label")]
    return events + tick


def _per_model(join: JoinPartition, model: str) -> tuple[dict, dict, dict, int]:
    """One model's counts, per-version counts and metric running totals, and request count."""
    state = join.partition_state()["acc"]
    counts = JoinCounts.from_state(state["counts"])
    versions = {key: value for key, value in counts.by_version().items() if key[0] == model}
    totals = {key: value for key, value in running_totals(state["metrics"]["v"]).items()
              if key.startswith(model + "\x1f")}
    return dict(counts.models[model]), versions, totals, join.accumulator().metrics.requests_of(model)


def _run(events: list, batch_seed: int) -> JoinPartition:
    join = JoinPartition(DictStore(snapshot=True), SHARED, "run", evaluator_accumulator(
        MetricsConfig(window_ms=MIN), SHARED.settle_ms))
    for batch in _batches(Feed()(*events), random.Random(batch_seed)):
        join.process(batch)
    return join


@settings(max_examples=int(__import__("os").environ.get("JOIN_SHARED_EXAMPLES", "150")), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(shared_id_streams(), st.lists(st.booleans(), min_size=200, max_size=200), st.integers(0, 10**6))
def test_models_sharing_request_ids_each_get_what_they_would_get_alone(streams, picks, seed):
    # Any interleaving of the two models' streams (each keeps its own order), batched at random.
    fraud, pricing, merged = list(streams["fraud"]), list(streams["pricing"]), []
    for take_fraud in picks + [True] * len(fraud):
        source = fraud if (take_fraud and fraud) or not pricing else pricing
        if not source:
            break
        merged.append(source.pop(0))
    merged = _settled(merged, MODELS)
    together = _run(merged, seed)
    for model in MODELS:
        alone = _run(_settled(streams[model], (model,)), seed + 1)
        assert _per_model(together, model) == _per_model(alone, model)


def test_a_label_joins_the_responses_of_its_own_model_only():
    feed, join = Feed(), new_join()
    shared = [InferenceResponse(request_id="r1", model="fraud", version="v1", role="primary", ts=0, prediction=1),
              InferenceResponse(request_id="r1", model="pricing", version="v1", role="primary", ts=0, prediction=0),
              GroundTruth(request_id="r1", model="pricing", ts=MIN, label=0)]
    facts = join.process(feed(*shared))
    assert [(f.model, f.prediction) for f in facts if isinstance(f, JoinedRecord)] == [("pricing", 0)]
    assert not [f for f in facts if isinstance(f, Duplicate)]
    assert {key[0] for key in counts(join)} == {"fraud", "pricing"}


def test_state_of_the_legacy_layout_is_moved_to_its_model_and_counted_once():
    # A partition state and a request state as the previous layout wrote them (one state per
    # request id under "r<id>", expiry entries naming request ids).
    store = DictStore(snapshot=True)
    legacy = new_join(store)
    legacy.process(Feed()(resp("r1", "v1", "primary", 0)))
    moved = store.get(request_key("m", "r1"))
    part = store.get(legacy.partition_key)
    store.delete(request_key("m", "r1"))
    store.set("rr1", moved)
    part.pop("layout")
    part["xq"]["open"] = [[request_key_entry[0][len(request_key("m", "")):], *request_key_entry[1:]]
                          for request_key_entry in part["xq"]["open"]]
    store.set(legacy.partition_key, part)
    join = new_join(store, run="run-b")
    feed = Feed()
    feed.offsets = {"InferenceResponse": 0}
    # Another model's label for the same id does not take the legacy state ...
    join.process(feed(GroundTruth(request_id="r1", model="other", ts=MIN, label=1)))
    assert store.get("rr1") is not None
    # ... its own model's label does: it joins, and the state now lives under its new key.
    facts = join.process(feed(label("r1", MIN)))
    assert [f.request_id for f in facts if isinstance(f, JoinedRecord)] == ["r1"]
    assert store.get("rr1") is None and store.get(request_key("m", "r1")) is not None
    # When time moves on, the old expiry entry finds nothing; the new one expires the state once.
    join.process(feed(resp("r9", "v1", "primary", 40 * MIN), label("r9", 40 * MIN),
                      req("r9", 40 * MIN)))
    c = counts(join)[("m", "v1", "primary")]
    assert (c["responses"], c["joined"], c["expired"]) == (2, 2, 0)


# --- clocks that run ahead or behind -----------------------------------------------------------

def test_an_event_stamped_ahead_of_the_clock_moves_time_only_to_the_tolerance():
    feed, join = Feed(), new_join()
    now = 60 * MIN
    join.process(feed(req("r1", now), resp("r1", "v1", "primary", now)), now_ms=now)
    # One client two hours ahead: request, response and label.
    ahead = now + 120 * MIN
    facts = join.process(feed(req("x", ahead), resp("x", "v1", "primary", ahead), label("x", ahead)), now_ms=now)
    skews = [f for f in facts if isinstance(f, ClockSkew)]
    assert [(f.kind, f.direction, f.skew_ms) for f in skews] == [
        ("request", "future", 120 * MIN), ("response", "future", 120 * MIN), ("label", "future", 120 * MIN)]
    assert join.partition_state()["wm"] == now + CONFIG.max_future_skew_ms
    # r1's label a minute later still joins: the future triple did not expire it.
    facts = join.process(feed(label("r1", now + MIN)), now_ms=now + MIN)
    assert any(isinstance(f, JoinedRecord) and f.request_id == "r1" for f in facts)
    assert join.accumulator().models["m"]["future_requests"] == 1
    assert join.accumulator().models["m"][MAX_FUTURE_SKEW] == 120 * MIN


def test_without_a_clock_event_times_are_taken_as_they_come():
    feed, join = Feed(), new_join()
    join.process(feed(req("r1", 0), resp("r1", "v1", "primary", 0), label("r0", 0)))
    facts = join.process(feed(req("x", 500 * MIN), resp("x", "v1", "primary", 500 * MIN), label("x", 500 * MIN)))
    assert not any(isinstance(f, ClockSkew) for f in facts)
    assert any(isinstance(f, Expired) for f in facts)


def test_an_event_stamped_far_behind_affects_only_itself_and_is_counted():
    feed, join = Feed(), new_join()
    now = 100 * MIN
    join.process(feed(req("r1", now), resp("r1", "v1", "primary", now), label("r0", now)), now_ms=now)
    facts = join.process(feed(resp("old", "v1", "primary", now - 30 * MIN)), now_ms=now)
    [skew] = [f for f in facts if isinstance(f, ClockSkew)]
    assert (skew.kind, skew.direction, skew.skew_ms) == ("response", "past", 30 * MIN)
    assert join.partition_state()["wm"] == now
    facts = join.process(feed(label("r1", now + MIN)), now_ms=now + MIN)
    assert any(isinstance(f, JoinedRecord) and f.request_id == "r1" for f in facts)
    assert join.accumulator().models["m"]["past_responses"] == 1


# --- the hot path's Structs ----------------------------------------------------------------------

@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(scenarios(), st.integers(0, 10**6))
def test_the_hot_paths_structs_join_exactly_as_the_models(events, seed):
    """The worker hands the core msgspec Structs (schemas.fast_codec), tests and replay hand it the
    models: the same records give the same facts and the same stored state either way."""
    metrics = evaluator_accumulator(MetricsConfig(), CONFIG.settle_ms)
    by_models = Feed()(*events)
    by_structs = [Incoming(decode_fast(type(i.message), encode(i.message)), i.source, i.offset) for i in by_models]
    assert all(isinstance(i.message, msgspec.Struct) for i in by_structs)
    joins = [JoinPartition(DictStore(snapshot=True), CONFIG, "run", metrics) for _ in range(2)]
    facts: list[list] = [[], []]
    for batch in _batches(list(range(len(by_models))), random.Random(seed)):
        for k, stream in enumerate((by_models, by_structs)):
            facts[k] += joins[k].process([stream[i] for i in batch], now_ms=300 * MIN)
    assert facts[0] == facts[1]
    assert joins[0].store.data == joins[1].store.data
