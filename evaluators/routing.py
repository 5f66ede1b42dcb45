"""Which version serves a request: sticky assignment, cohorts, shadows, and which commands to obey.

Pure: the router SDK (``streams/serving/router.py``) feeds it the commands it reads from
``rollout.control`` and asks it, per request, where to send it.

**Sticky assignment.** A subject's *bucket* is ``murmur3_32("<model>:<rollout_id>:<subject>") mod
10,000`` (seed 0, unsigned): the same in every process and language. Non-baseline versions take the
low buckets, in the order of their names, each as many as its share (in hundredths of a percent);
the baseline takes the rest. So when a canary goes from 5% to 10%, the first 5%'s subjects keep the
canary and new ones join; a subject never goes back from the canary to the baseline while the share
rises. The rollout id is in the hash so each rollout draws a fresh set of subjects: the same users
are not the guinea pigs of every release.

**Cohorts.** A cohort rule (``{"region": "eu"}``) restricts who can get a non-baseline version:
requests whose attributes do not match every pair are served by the baseline. Within the cohort
the shares apply as above.

**Which commands count** (:class:`CommandGate`): a command is applied only if its epoch is higher
than the last one applied for its model; with a key configured, only if it is signed by that key
and its ``command_id`` was not seen before. Each refusal says why.

>>> from schemas.control import RoutingCommand
>>> book = RouteBook(baselines={"fraud": "v1"})
>>> book.route("fraud", "user-1").serve      # no command yet: the baseline
'v1'
>>> book.apply(RoutingCommand(model="fraud", epoch=0, issued_at=0, issuer="evaluator", action="set_routes",
...     routes={"v1": 0, "v2": 100}, shadow=["v3"], reason="all in", rollout_id="r1", baseline="v1"))
>>> book.route("fraud", "user-1")
Assignment(serve='v2', mirror=('v3',), role='canary')
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import mmh3

from schemas.control import RoutingCommand
from schemas.signing import Verifier, verify_command

BUCKETS = 10_000
#: How many command ids a gate remembers to refuse replays (oldest forgotten first).
SEEN_IDS = 100_000


def bucket(salt: str, subject: str) -> int:
    """The subject's bucket in ``[0, BUCKETS)``; ``salt`` is ``"<model>:<rollout_id>:"``.

    >>> bucket("fraud:r1:", "user-1") == bucket("fraud:r1:", "user-1")
    True
    """
    return mmh3.hash(salt + subject, signed=False) % BUCKETS


@dataclass(frozen=True)
class Assignment:
    """Where one request goes: the version that answers, the versions that get a mirrored copy, and
    the ``role`` the answering version's ``InferenceResponse`` carries (mirrors are ``shadow``)."""

    serve: str
    mirror: tuple[str, ...] = ()
    role: str = "primary"


@dataclass(frozen=True)
class RouteTable:
    """One model's routes, prepared for lookups."""

    baseline: str
    salt: str
    answers: tuple[Assignment, ...]  # non-baseline versions in bucket order, then the baseline
    cuts: tuple[int, ...]            # upper bucket bound of each non-baseline version
    mirror: tuple[str, ...]
    epoch: int
    routes: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, command: RoutingCommand, default_baseline: str | None) -> RouteTable:
        baseline = command.baseline or default_baseline
        if baseline is None or baseline not in command.routes:
            # The command's own biggest share: what "baseline" means when nobody said.
            baseline = max(sorted(command.routes), key=lambda v: command.routes[v])
        others = sorted(v for v in command.routes if v != baseline)
        cuts, upper = [], 0
        for version in others:
            upper += round(command.routes[version] * BUCKETS / 100)
            cuts.append(min(upper, BUCKETS))
        mirror = tuple(v for v in command.shadow if v not in command.routes or command.routes[v] == 0)
        # Answers are prepared once per command, so a lookup allocates nothing.
        answers = (*(Assignment(v, mirror, "canary") for v in others), Assignment(baseline, mirror, "primary"))
        return cls(baseline=baseline, salt=f"{command.model}:{command.rollout_id}:", answers=answers,
                   cuts=tuple(cuts), mirror=mirror, epoch=command.epoch, routes=dict(command.routes))

    def route(self, subject: str) -> Assignment:
        if not self.cuts:
            return self.answers[-1]
        return self.answers[bisect_right(self.cuts, bucket(self.salt, subject))]


class CommandGate:
    """Decides whether a command may be applied; remembers epochs and (with a key) command ids."""

    def __init__(self, verifier: Verifier | None = None, seen_ids: int = SEEN_IDS) -> None:
        self.verifier = verifier
        self.epochs: dict[str, int] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_max = seen_ids

    def admit(self, command: RoutingCommand, raw: bytes | None = None) -> str | None:
        """Check and, if accepted, record the command (``raw``: its record's bytes, which the
        signature covers as received); returns the refusal reason or ``None``."""
        if self.verifier is not None:
            reason = verify_command(command, self.verifier, raw)
            if reason is not None:
                return reason
            key = str(command.command_id)
            if key in self._seen:
                return f"replayed: command {command.command_id} was already seen"
            self._seen[key] = None  # a genuine command, applied or stale, may not come back
            if len(self._seen) > self._seen_max:
                self._seen.popitem(last=False)
        last = self.epochs.get(command.model)
        if last is not None and command.epoch <= last:
            return f"stale: epoch {command.epoch} is not higher than {last}, the last applied for {command.model}"
        self.epochs[command.model] = command.epoch
        return None


class RouteBook:
    """Every model's current routes, the gate in front of them, and the per-request lookup.

    ``baselines`` names each model's baseline, served before any command arrives and after
    commands that do not say. ``cohorts`` maps a model to the attributes a request must have to get
    a non-baseline version.
    """

    def __init__(self, baselines: Mapping[str, str] | None = None, verifier: Verifier | None = None,
                 cohorts: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.baselines = dict(baselines or {})
        self.cohorts = {m: dict(c) for m, c in (cohorts or {}).items()}
        self.gate = CommandGate(verifier)
        self.tables: dict[str, RouteTable] = {}

    def apply(self, command: RoutingCommand, raw: bytes | None = None) -> str | None:
        """Apply ``command`` if the gate admits it; returns the refusal reason, or ``None``."""
        reason = self.gate.admit(command, raw)
        if reason is None:
            self.tables[command.model] = RouteTable.of(command, self.baselines.get(command.model))
        return reason

    def route(self, model: str, subject: str, attributes: Mapping[str, str] | None = None) -> Assignment:
        """The version that serves this request (and mirrors). Unknown models go to their baseline."""
        table = self.tables.get(model)
        if table is None:
            baseline = self.baselines.get(model)
            if baseline is None:
                raise LookupError(f"no routes and no baseline configured for model {model!r}")
            return Assignment(baseline)
        cohort = self.cohorts.get(model)
        if cohort and (attributes is None or any(attributes.get(k) != v for k, v in cohort.items())):
            return table.answers[-1]
        return table.route(subject)

    def serving(self, model: str) -> dict[str, float]:
        """The routes in force for ``model`` (the baseline at 100% before any command)."""
        table = self.tables.get(model)
        if table is not None:
            return dict(table.routes)
        return {self.baselines[model]: 100.0} if model in self.baselines else {}
