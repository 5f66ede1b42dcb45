"""When a partition's sources stop holding its stream time back."""

from evaluators.idleness import SourceIdleness

SOURCES = ["q0", "s0", "l0"]


def test_a_source_at_its_end_is_idle_only_after_the_silence():
    idleness = SourceIdleness(SOURCES, idle_after_ms=5_000, now_ms=0)
    idleness.arrived(["q0", "s0"], now_ms=3_000)
    fence, ends = {"q0": 9, "s0": 4}, {"q0": 10, "s0": 5, "l0": 0}
    # The labels were never heard from; at 4 s they have been silent for 4 s only.
    assert idleness.idle(fence, ends, now_ms=4_000) == set()
    assert idleness.idle(fence, ends, now_ms=5_000) == {"l0"}
    assert idleness.idle(fence, ends, now_ms=8_000) == {"q0", "s0", "l0"}


def test_a_silent_source_with_records_left_is_not_idle():
    idleness = SourceIdleness(SOURCES, idle_after_ms=1_000, now_ms=0)
    assert idleness.idle({"q0": 9}, {"q0": 10, "s0": 3, "l0": 0}, now_ms=2_000) == {"q0", "l0"}


def test_an_observation_older_than_what_was_read_makes_nothing_idle():
    # A record at offset 10 of q0 was applied, but the observation says q0 ends at 10: it was made
    # before that record was written, so it cannot vouch for l0 either.
    idleness = SourceIdleness(SOURCES, idle_after_ms=1_000, now_ms=0)
    assert idleness.idle({"q0": 10}, {"q0": 10, "s0": 0, "l0": 0}, now_ms=2_000) == set()


def test_news_from_a_source_restarts_its_silence():
    idleness = SourceIdleness(SOURCES, idle_after_ms=1_000, now_ms=0)
    idleness.arrived(["l0"], now_ms=1_500)
    assert "l0" not in idleness.idle({"l0": 0}, {"q0": 0, "s0": 0, "l0": 1}, now_ms=2_000)
    assert "l0" in idleness.idle({"l0": 0}, {"q0": 0, "s0": 0, "l0": 1}, now_ms=2_500)
