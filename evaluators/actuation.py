"""Routing commands as the resources that move real traffic: an Istio ``VirtualService``, a Gateway
API ``HTTPRoute``, a KServe ``InferenceService``. Pure: a command in, the object out
(``shadowcanary actuate`` follows ``rollout.control``, verifies each command and writes these).

Each object is complete enough for ``kubectl apply -f -`` and is also a JSON merge patch (RFC 7386)
of the fields ShadowCanary owns, so ``kubectl patch --type merge`` works too. A merge patch replaces
arrays whole: the route lists below are ShadowCanary's (a rollout's traffic split is written in one
piece; other fields of the resource are left alone). Each carries the command's model, epoch,
rollout and command id as annotations, so what is live can be traced to its decision.

Fields, as the projects publish them:

- **Istio** ``networking.istio.io/v1`` ``VirtualService``: ``spec.hosts``; ``spec.http[].route[]``
  of ``HTTPRouteDestination`` (``destination.host``, ``destination.subset``, integer ``weight``
  summing to 100); ``spec.http[].mirrors[]`` of ``HTTPMirrorPolicy`` (``destination``,
  ``percentage.value``) for shadow versions (Istio 1.19 and later).
- **Gateway API** ``gateway.networking.k8s.io/v1`` ``HTTPRoute``: ``spec.parentRefs``;
  ``spec.rules[].backendRefs[]`` (``name``, ``port``, ``weight``: proportional, 0 to 1,000,000);
  a ``RequestMirror`` filter (``requestMirror.backendRef``) per shadow version.
- **KServe** ``serving.kserve.io/v1beta1`` ``InferenceService``:
  ``spec.predictor.canaryTrafficPercent``, the share of the latest revision (the candidate); the
  previous ready revision serves the rest. Promotion removes the field (``null`` in a merge patch:
  the latest revision takes all); a rollback sets 0. An InferenceService cannot mirror, so a shadow
  stage sends the candidate nothing and says so in an annotation.

>>> from schemas.control import RoutingCommand
>>> c = RoutingCommand(model="fraud", epoch=2, issued_at=0, issuer="evaluator", action="set_routes",
...                    routes={"v1": 66.7, "v2": 33.3}, reason="stage 2", rollout_id="r", baseline="v1")
>>> vs = virtual_service(c, Target(name="fraud", namespace="prod", host="fraud.prod.svc.cluster.local"))
>>> [(r["destination"]["subset"], r["weight"]) for r in vs["spec"]["http"][0]["route"]]
[('v1', 67), ('v2', 33)]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.control import RoutingCommand

Kind = Literal["istio", "gateway-api", "kserve"]
KINDS: tuple[Kind, ...] = ("istio", "gateway-api", "kserve")
ROUTE_NAME = "shadowcanary"
ANNOTATION = "shadowcanary.io/"
#: Gateway API weights are proportional; percentages are written in hundredths.
GATEWAY_WEIGHT_SCALE = 100


@dataclass(frozen=True)
class Target:
    """The resource a model's traffic is moved in: its name and namespace, and how versions are
    addressed (``backends``: version -> Istio subset or Gateway API Service; the version's own name
    when absent)."""

    name: str
    namespace: str = "default"
    host: str | None = None  # Istio: the destination host (the Service's DNS name)
    port: int | None = None  # Gateway API: the backend Services' port
    parent: str | None = None  # Gateway API: the Gateway the route attaches to
    backends: dict[str, str] = field(default_factory=dict)

    def backend(self, version: str) -> str:
        return self.backends.get(version, version)


def integer_weights(routes: dict[str, float], total: int = 100) -> dict[str, int]:
    """Percentages as integers summing to ``total`` (largest remainders get the rounding).

    >>> integer_weights({"a": 33.3, "b": 33.3, "c": 33.4})
    {'a': 33, 'b': 33, 'c': 34}
    """
    positive = {version: share for version, share in routes.items() if share > 0}
    whole = sum(positive.values())
    if whole <= 0:
        return {}
    scaled = {version: share * total / whole for version, share in positive.items()}
    weights = {version: math.floor(value) for version, value in scaled.items()}
    left = total - sum(weights.values())
    for version in sorted(scaled, key=lambda v: (weights[v] - scaled[v], v))[:left]:
        weights[version] += 1
    return weights


def _metadata(command: RoutingCommand, target: Target, notes: dict[str, str] | None = None) -> dict[str, Any]:
    annotations = {
        f"{ANNOTATION}model": command.model,
        f"{ANNOTATION}epoch": str(command.epoch),
        f"{ANNOTATION}rollout-id": command.rollout_id or "",
        f"{ANNOTATION}command-id": str(command.command_id),
        f"{ANNOTATION}action": command.action,
    }
    return {"name": target.name, "namespace": target.namespace, "annotations": annotations | (notes or {})}


def virtual_service(command: RoutingCommand, target: Target) -> dict[str, Any]:
    """The command as an Istio ``VirtualService`` (its one ShadowCanary HTTP route)."""
    if not target.host:
        raise ValueError("an Istio target needs the destination host (the Service's name)")
    route: dict[str, Any] = {"name": ROUTE_NAME, "route": [
        {"destination": {"host": target.host, "subset": target.backend(version)}, "weight": weight}
        for version, weight in integer_weights(command.routes).items()]}
    if command.shadow:
        route["mirrors"] = [{"destination": {"host": target.host, "subset": target.backend(version)},
                             "percentage": {"value": 100.0}} for version in command.shadow]
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": _metadata(command, target),
            "spec": {"hosts": [target.host], "http": [route]}}


def http_route(command: RoutingCommand, target: Target) -> dict[str, Any]:
    """The command as a Gateway API ``HTTPRoute`` (its one rule)."""
    if target.port is None:
        raise ValueError("a Gateway API target needs the backend Services' port")
    weights = integer_weights(command.routes, 100 * GATEWAY_WEIGHT_SCALE)
    rule: dict[str, Any] = {"backendRefs": [{"name": target.backend(version), "port": target.port, "weight": weight}
                                            for version, weight in weights.items()]}
    if command.shadow:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": target.backend(version), "port": target.port}}} for version in command.shadow]
    spec: dict[str, Any] = {"rules": [rule]}
    if target.parent:
        spec["parentRefs"] = [{"name": target.parent}]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": _metadata(command, target),
            "spec": spec}


def inference_service(command: RoutingCommand, target: Target) -> dict[str, Any]:
    """The command as a KServe ``InferenceService``'s canary share (the candidate is its latest
    revision: the version the command routes to that is not its baseline)."""
    notes = {}
    if command.action == "promote":
        percent: int | None = None  # the latest revision takes all traffic
    elif command.action == "rollback":
        percent = 0
    else:
        others = [share for version, share in command.routes.items() if version != command.baseline]
        baseline_share = command.routes.get(command.baseline or "", 0.0)
        percent = integer_weights({"candidate": sum(others), "baseline": baseline_share}).get("candidate", 0)
    if command.shadow:
        notes[f"{ANNOTATION}not-mirrored"] = (f"{', '.join(command.shadow)}: an InferenceService cannot mirror "
                                              "traffic; the shadow versions get none")
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": _metadata(command, target, notes), "spec": {"predictor": {"canaryTrafficPercent": percent}}}


BUILDERS: dict[Kind, Callable[[RoutingCommand, Target], dict[str, Any]]] = {
    "istio": virtual_service, "gateway-api": http_route, "kserve": inference_service}


def resource_for(kind: Kind, command: RoutingCommand, target: Target) -> dict[str, Any]:
    """The object that puts ``command`` in force on a ``kind`` target."""
    return BUILDERS[kind](command, target)


__all__ = ["KINDS", "Target", "http_route", "inference_service", "integer_weights", "resource_for",
           "virtual_service"]
