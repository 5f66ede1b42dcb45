"""The pure join: semantics on small scenarios, and exact counts across simulated crashes."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st

from evaluators.counts import JoinCounts
from evaluators.facts import AgreementFact, Duplicate, Expired, JoinedRecord, LateLabel, UnmatchedLabel
from evaluators.join import Incoming, JoinConfig, JoinPartition, caught_up_sources, fence_after
from evaluators.store import DictStore
from schemas import GroundTruth, InferenceRequest, InferenceResponse

MIN = 60_000
CONFIG = JoinConfig(label_timeout_ms=10 * MIN, expiry_grace_ms=MIN)


def req(rid: str, ts: int, **features: Any) -> InferenceRequest:
    return InferenceRequest(request_id=rid, model="m", ts=ts, features=features)


def resp(rid: str, version: str, role: str, ts: int, prediction: Any = 1, error: str | None = None) -> InferenceResponse:
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
    assert join.store.get("rr1") is not None
    join.process(feed(resp("r3", "v1", "primary", 40 * MIN)))  # past the tombstone's ttl
    assert join.store.get("rr1") is None


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
    """Process ``incoming`` with ``crashes`` worker deaths at random points. At a crash the store is
    rebuilt from a prefix of its changelog that holds at least what was flushed at the last offset
    commit, and a new run replays every event after the last committed offset, batched differently."""
    rng = random.Random(seed)
    store = DictStore(snapshot=True)
    committed = 0  # events whose offsets the consumer committed
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
            if rng.random() < 0.5:  # a commit: the producer is flushed, then offsets are committed
                durable_writes, committed = len(store.writes), processed
        if last_run:
            return join
        store.rebuild_from(store.writes[:rng.randint(durable_writes, len(store.writes))])
    raise AssertionError("unreachable")


@settings(max_examples=int(__import__("os").environ.get("JOIN_CRASH_EXAMPLES", "300")), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(scenarios(), st.integers(0, 10**6), st.integers(1, 3))
def test_counts_are_exact_across_crashes_that_lose_a_changelog_suffix(events, seed, crashes):
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
