"""Routing commands as Istio, Gateway API and KServe objects (evaluators/actuation.py)."""

from __future__ import annotations

import pytest

from evaluators.actuation import Target, http_route, inference_service, integer_weights, virtual_service
from evaluators.policy.engine import RolloutEngine
from schemas.rollout import RolloutSpec

ISTIO = Target(name="fraud", namespace="prod", host="fraud.prod.svc.cluster.local", backends={"v1": "stable"})
GATEWAY = Target(name="fraud", namespace="prod", port=8080, parent="edge", backends={"v2": "fraud-v2"})
KSERVE = Target(name="fraud", namespace="prod")


def commands_of_a_rollout(rollback: bool):
    """The commands the engine itself issues for a canary 10 -> 50 -> 100 (or rolled back at 50)."""
    spec = RolloutSpec(model="fraud", baseline="v1", candidate="v2", mode="canary", task="binary", steps=[10, 50],
                       guardrails=[{"metric": "error_rate", "max": 0.05}])
    engine = RolloutEngine()
    out = engine.start(spec, 0, {})

    def totals(look: int, error_share: float) -> dict:
        from evaluators.metrics.version import slim
        states = {}
        for version, share in (("v1", 0.0), ("v2", error_share)):
            state = slim(None)
            state["n"] = state["lab"] = 10_000 * look
            state["err"] = int(10_000 * look * share)
            states[("fraud", version, "primary")] = state
        return states

    out += engine.tick(1_000, totals(1, 0.0))
    out += engine.tick(2_000, totals(2, 0.25 if rollback else 0.0))
    out += engine.tick(3_000, totals(3, 0.25 if rollback else 0.0))
    return [o.message for o in out if o.topic == "control"]


def test_a_canary_going_10_50_100_as_a_virtual_service():
    objects = [virtual_service(c, ISTIO) for c in commands_of_a_rollout(rollback=False)]
    routes = [[(r["destination"]["subset"], r["weight"]) for r in o["spec"]["http"][0]["route"]] for o in objects]
    assert routes == [[("stable", 90), ("v2", 10)], [("stable", 50), ("v2", 50)], [("v2", 100)]]
    first = objects[0]
    assert first["apiVersion"] == "networking.istio.io/v1" and first["kind"] == "VirtualService"
    assert first["metadata"]["name"] == "fraud" and first["metadata"]["namespace"] == "prod"
    assert first["spec"]["hosts"] == ["fraud.prod.svc.cluster.local"]
    assert [o["metadata"]["annotations"]["shadowcanary.io/epoch"] for o in objects] == ["0", "1", "2"]
    assert all(sum(r["weight"] for r in o["spec"]["http"][0]["route"]) == 100 for o in objects)


def test_a_rollback_is_one_object_with_the_baseline_at_100():
    commands = commands_of_a_rollout(rollback=True)
    assert [c.action for c in commands] == ["set_routes", "set_routes", "rollback"]
    rollback = commands[-1]
    assert [(r["destination"]["subset"], r["weight"])
            for r in virtual_service(rollback, ISTIO)["spec"]["http"][0]["route"]] == [("stable", 100)]
    assert [(b["name"], b["weight"]) for b in http_route(rollback, GATEWAY)["spec"]["rules"][0]["backendRefs"]] == [
        ("v1", 10_000)]
    assert inference_service(rollback, KSERVE)["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_the_same_canary_as_an_http_route_and_an_inference_service():
    commands = commands_of_a_rollout(rollback=False)
    routes = [http_route(c, GATEWAY) for c in commands]
    assert routes[0]["apiVersion"] == "gateway.networking.k8s.io/v1" and routes[0]["kind"] == "HTTPRoute"
    assert routes[0]["spec"]["parentRefs"] == [{"name": "edge"}]
    assert [[(b["name"], b["port"], b["weight"]) for b in r["spec"]["rules"][0]["backendRefs"]] for r in routes] == [
        [("v1", 8080, 9_000), ("fraud-v2", 8080, 1_000)], [("v1", 8080, 5_000), ("fraud-v2", 8080, 5_000)],
        [("fraud-v2", 8080, 10_000)]]
    services = [inference_service(c, KSERVE) for c in commands]
    assert services[0]["apiVersion"] == "serving.kserve.io/v1beta1" and services[0]["kind"] == "InferenceService"
    # promotion removes the field (null in a merge patch): the latest revision takes all traffic
    assert [s["spec"]["predictor"]["canaryTrafficPercent"] for s in services] == [10, 50, None]


def test_shadow_versions_are_mirrored_where_the_resource_can_mirror():
    from schemas.control import RoutingCommand
    command = RoutingCommand(model="fraud", epoch=0, issued_at=0, issuer="evaluator", action="set_routes",
                             routes={"v1": 100.0}, shadow=["v3"], reason="shadow", rollout_id="r", baseline="v1")
    assert virtual_service(command, ISTIO)["spec"]["http"][0]["mirrors"] == [
        {"destination": {"host": "fraud.prod.svc.cluster.local", "subset": "v3"}, "percentage": {"value": 100.0}}]
    assert http_route(command, GATEWAY)["spec"]["rules"][0]["filters"] == [
        {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "v3", "port": 8080}}}]
    service = inference_service(command, KSERVE)
    assert service["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert "cannot mirror" in service["metadata"]["annotations"]["shadowcanary.io/not-mirrored"]


@pytest.mark.parametrize("routes", [{"a": 33.3, "b": 33.3, "c": 33.4}, {"a": 0.5, "b": 99.5}, {"a": 12.5, "b": 87.5},
                                    {"a": 100.0}, {"a": 1e-9, "b": 100.0}])
def test_integer_weights_sum_to_the_total(routes):
    weights = integer_weights(routes)
    assert sum(weights.values()) == 100 and all(w >= 0 for w in weights.values())
    for version, share in routes.items():
        assert abs(weights.get(version, 0) - share) < 1


def test_targets_that_miss_what_their_kind_needs_are_refused():
    from schemas.control import RoutingCommand
    command = RoutingCommand(model="fraud", epoch=0, issued_at=0, issuer="evaluator", action="set_routes",
                             routes={"v1": 100.0}, reason="r", rollout_id="r", baseline="v1")
    with pytest.raises(ValueError, match="host"):
        virtual_service(command, KSERVE)
    with pytest.raises(ValueError, match="port"):
        http_route(command, KSERVE)
