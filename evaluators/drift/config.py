"""How drift is judged: the knobs of :class:`evaluators.drift.monitor.DriftMonitor` (see there)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DriftConfig:
    #: Largest chance that a window falsely flags one condition (feature of a version).
    alpha: float = 0.001
    #: Flagged windows in a row before an alert fires; clean windows in a row before it resolves.
    confirm_windows: int = 2
    clear_windows: int = 3
    #: No new firing of a condition within this long (event time) of its last one.
    cooldown_ms: int = 600_000
    #: Windows with data that make a version's pinned reference.
    reference_windows: int = 5
    #: Fewer values than this on either side: the comparison is not made (neither flag nor clear).
    min_samples: int = 100
    #: Effect-size floors of a flag.
    min_psi: float = 0.1
    min_js: float = 0.1
    min_missing_change: float = 0.05
    #: ADWIN's confidence parameter for concept drift on each version's errors.
    adwin_delta: float = 0.002
