"""Drift: feature and prediction distributions per version against a reference and against the
baseline's traffic (input skew), concept drift on each version's errors, and the alerts they raise."""

from evaluators.drift.concept import ErrorDriftDetector
from evaluators.drift.config import DriftConfig
from evaluators.drift.monitor import DriftMonitor

__all__ = ["DriftConfig", "DriftMonitor", "ErrorDriftDetector"]
