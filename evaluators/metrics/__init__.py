"""Mergeable metric state per model version: label-free numbers at once, labelled ones as labels join.

Every state here is plain JSON-compatible data, updated in place per fact, merged by addition, and
turned into numbers by river's metrics (confusion-matrix metrics, running means and variances) where
river has them. :mod:`evaluators.metrics.version` says what one version's state holds.
"""

from evaluators.metrics.version import MetricsConfig, SlimState, VersionState

__all__ = ["MetricsConfig", "SlimState", "VersionState"]
