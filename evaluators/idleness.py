"""Which sources of a partition may stop holding its stream time back.

A source (one partition of one input topic) is **idle** when it is read to its end, by an
observation of end offsets that is current (:func:`evaluators.join.caught_up_sources`), *and* nothing
has arrived from it for ``idle_after_ms`` of processing time. Being read to the end is not enough on
its own: producers deliver records to different partitions independently (librdkafka batches per
partition), so a source can be at its end while records written before the ones just read from
another topic are still in a producer's queue. The silence is the slack for that (Flink's
"idleness timeout" plays the same part), and it is why an idle source's late records are rare.

Pure: the caller gives processing time.

>>> idleness = SourceIdleness(["q0", "l0"], idle_after_ms=5_000, now_ms=0)
>>> idleness.arrived(["q0"], now_ms=1_000)
>>> sorted(idleness.idle({"q0": 9}, {"q0": 10, "l0": 0}, now_ms=4_000))  # l0 silent for 4 s only
[]
>>> sorted(idleness.idle({"q0": 9}, {"q0": 10, "l0": 0}, now_ms=6_000))
['l0', 'q0']
"""

from __future__ import annotations

from collections.abc import Iterable

from evaluators.join import caught_up_sources


class SourceIdleness:
    def __init__(self, sources: Iterable[str], idle_after_ms: int, now_ms: int = 0) -> None:
        self.sources = list(sources)
        self.idle_after_ms = idle_after_ms
        # A source never heard from has been silent since the partition was taken on.
        self.last_arrival = dict.fromkeys(self.sources, now_ms)

    def arrived(self, sources: Iterable[str], now_ms: int) -> None:
        """Records from ``sources`` were just read."""
        for source in sources:
            self.last_arrival[source] = now_ms

    def silent(self, now_ms: int) -> set[str]:
        """The sources nothing has arrived from for ``idle_after_ms``."""
        return {s for s in self.sources if now_ms - self.last_arrival.get(s, now_ms) >= self.idle_after_ms}

    def idle(self, fence: dict[str, int], end_offsets: dict[str, int], now_ms: int) -> set[str]:
        """The idle sources, given the last applied offset per source and one observation of ends."""
        silent = self.silent(now_ms)
        if not silent:
            return set()
        return caught_up_sources(fence, end_offsets, self.sources) & silent
