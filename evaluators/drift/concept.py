"""Concept drift on a version's error stream: river's ADWIN over the 0/1 "this answer was wrong".

Why ADWIN (river's ``drift.ADWIN``) rather than Page-Hinkley or KSWIN: it needs no guess of the
change's size (Page-Hinkley needs ``delta`` and ``threshold`` in the metric's units) and no window
length (KSWIN's random subsampling makes it non-deterministic, which replay cannot have); its one
parameter ``delta`` bounds the chance of a false cut, and ``bench/drift.py`` measures the delay and
false alarms of all three on river's synthetic streams.

The stream evaluator sees a version's errors per closed window (``bad`` of ``n``), not one by one:
:meth:`ErrorDriftDetector.update` feeds them as ``n`` bits with the ``bad`` ones spread evenly, so a
window's mean is kept exactly and the order is deterministic. The detector keeps the recent counts
(``history``) so that it can be rebuilt exactly from JSON state after a restart.

>>> detector = ErrorDriftDetector()
>>> [detector.update(5, 100) for _ in range(30)].count(True)
0
>>> any(detector.update(40, 100) for _ in range(5))
True
"""

from __future__ import annotations

from river import drift

#: Windows of counts kept to rebuild the detector after a restart.
HISTORY = 500


class ErrorDriftDetector:
    def __init__(self, delta: float = 0.002, history: list[list[int]] | None = None) -> None:
        self.delta = delta
        self.history: list[list[int]] = []
        self._adwin = drift.ADWIN(delta=delta)
        for bad, n in history or []:
            self.update(bad, n)

    def update(self, bad: int, n: int) -> bool:
        """Feed a window's ``bad`` errors out of ``n``; whether ADWIN cut its window (a change)."""
        self.history.append([bad, n])
        del self.history[:-HISTORY]
        detected = False
        spread = 0
        for _ in range(n):
            spread += bad
            wrong = spread >= n
            if wrong:
                spread -= n
            self._adwin.update(1.0 if wrong else 0.0)
            detected = detected or self._adwin.drift_detected
        return detected

    def to_state(self) -> list[list[int]]:
        return self.history
