"""The evaluator's internal topics and the keys on them: not part of the contract, but a wire format
all the same (workers of one version must agree on it, and a new owner reads what an old one wrote).

Three compacted topics beside the contract's (:mod:`schemas.topics`), under the same prefix:

- ``shadowcanary.internal.partials`` (one partition): what each input partition contributes and what
  the merging owner keeps. Keys:

  - ``h/<partition>``: the partition's **heartbeat** (its stream time, exact counts, each version's
    running total), the latest one kept;
  - ``w/<partition>/<snapshot id>``: the partition's part of a **closed window**, deleted (a
    tombstone) once the merged window is published;
  - ``d/monitor``, ``c/clock``, ``s/shapes``: the owner's drift monitor, clock-skew alerts and shape
    monitor, saved before the windows they judged are published.

- ``<app id>-join-state-changelog`` (one partition per input partition): the join's state, one record
  per request, partition state and metric window (the name the first engine gave it, so its state
  carried over).
- ``shadowcanary.internal.rollouts`` (one partition): the policy engine's state, one record, key
  ``engine``.

>>> from schemas.topics import Topics
>>> partials_topic_name(Topics("acme.")), heartbeat_key(3), window_key(3, "fraud:v2:canary:60000")
('acme.shadowcanary.internal.partials', b'h/3', b'w/3/fraud:v2:canary:60000')
>>> partial_kind(b"h/3"), partial_kind(b"w/3/x"), partial_kind(DRIFT_KEY), partial_kind(b"?")
('heartbeat', 'window', 'drift', None)
"""

from __future__ import annotations

from typing import Literal

from schemas.topics import Topics

PARTIALS = "shadowcanary.internal.partials"
ROLLOUTS = "shadowcanary.internal.rollouts"
#: The join's state store's name, in its changelog's name.
JOIN_STATE = "join-state"

HEARTBEAT_PREFIX = b"h/"
WINDOW_PREFIX = b"w/"
#: The drift monitor's state on the partials topic.
DRIFT_KEY = b"d/monitor"
#: The clock-skew alerts' state on the partials topic.
CLOCK_KEY = b"c/clock"
#: The shape monitor's state (what flows per version, the conditions told) on the partials topic.
SHAPES_KEY = b"s/shapes"
#: The policy engine's state on the rollouts topic.
ENGINE_KEY = b"engine"

PartialKind = Literal["heartbeat", "window", "drift", "clock", "shapes"]


def partials_topic_name(topics: Topics) -> str:
    return topics.prefix + PARTIALS


def rollouts_topic_name(topics: Topics) -> str:
    return topics.prefix + ROLLOUTS


def changelog_topic_name(topics: Topics, app_id: str) -> str:
    return f"{topics.prefix}{app_id}-{JOIN_STATE}-changelog"


def heartbeat_key(partition: int) -> bytes:
    return HEARTBEAT_PREFIX + str(partition).encode()


def window_key(partition: int, snapshot_id: str) -> bytes:
    return WINDOW_PREFIX + f"{partition}/{snapshot_id}".encode()


def partial_kind(key: bytes) -> PartialKind | None:
    """What a record on the partials topic holds, by its key (``None``: not a key of this protocol)."""
    if key.startswith(HEARTBEAT_PREFIX):
        return "heartbeat"
    if key.startswith(WINDOW_PREFIX):
        return "window"
    return _STATE_KEYS.get(key)


_STATE_KEYS: dict[bytes, PartialKind] = {DRIFT_KEY: "drift", CLOCK_KEY: "clock", SHAPES_KEY: "shapes"}
