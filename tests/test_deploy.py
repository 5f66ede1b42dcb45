"""deploy/ and docker-compose.yml, checked with real tools (no Docker engine here): promtool checks
the Prometheus config and rules and unit-tests every alert, hadolint lints the Dockerfile, the
compose file validates against the Compose Specification's schema, and the Grafana files hold
together. That every metric they query is one a worker exports is checked against a running worker
in tests/integration/test_observability.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_SCHEMA = ROOT / "tools" / "compose-spec" / "compose-spec.json"
METRIC = re.compile(r"\b(shadowcanary_[a-z0-9_]+)")


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(__import__("sys").executable).parent))
    assert found, f"{name} is installed by `make test-tools` / the test extras"
    return found


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT)


def queried_metrics() -> dict[str, set[str]]:
    """Every shadowcanary metric a dashboard panel, annotation, variable or alert rule queries, by file."""
    found: dict[str, set[str]] = {}
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        found[path.name] = set(METRIC.findall(path.read_text()))
    for path in (DEPLOY / "prometheus" / "rules").glob("*.yml"):
        exprs = [r.get("expr", "") for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
        found[path.name] = set(METRIC.findall("\n".join(exprs)))
    return found


def test_promtool_checks_the_config_and_the_rules():
    promtool = tool("promtool")
    result = run(promtool, "check", "config", "--syntax-only", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    result = run(promtool, "check", "rules", *map(str, rules))
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(
        len(g["rules"]) for g in yaml.safe_load((DEPLOY / "prometheus/rules/shadowcanary.yml").read_text())["groups"]
    )
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_promtool_unit_tests_every_alert():
    rules = [r["alert"] for g in yaml.safe_load((DEPLOY / "prometheus/rules/shadowcanary.yml").read_text())["groups"]
             for r in g["rules"] if "alert" in r]
    spec = (DEPLOY / "prometheus/tests/shadowcanary_test.yml").read_text()
    tested = set(re.findall(r"alertname: (\w+)", spec))
    assert set(rules) == tested, f"alerts without a unit test: {set(rules) - tested}"
    result = run(tool("promtool"), "test", "rules", str(DEPLOY / "prometheus/tests/shadowcanary_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_can_fail(tmp_path):
    """The rule tests are not vacuous: an alert that never fires fails its test."""
    rules = yaml.safe_load((DEPLOY / "prometheus/rules/shadowcanary.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "ShadowCanaryDrift":
                rule["expr"] = "vector(0) > 1"
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "shadowcanary.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "tests").mkdir()
    shutil.copy(DEPLOY / "prometheus/tests/shadowcanary_test.yml", tmp_path / "tests")
    result = subprocess.run([tool("promtool"), "test", "rules", "tests/shadowcanary_test.yml"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "ShadowCanaryDrift" in result.stdout + result.stderr


def test_hadolint_passes_the_dockerfile():
    result = run(tool("hadolint"), "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_runs_as_non_root_on_a_pinned_base():
    text = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.M)
    assert bases and all(re.search(r":\d+\.\d+\.\d+", b) for b in bases), bases
    assert re.search(r"^USER 10001", text, re.M)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_specification(compose):
    assert COMPOSE_SCHEMA.exists(), "`make test-tools` fetches the Compose Specification schema"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(compose)
    broken = {**compose, "services": {**compose["services"], "kafka": {**compose["services"]["kafka"], "ports": 9092}}}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(broken)


def test_compose_runs_what_the_issue_lists(compose):
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    evaluators = [name for name, s in services.items() if "evaluate" in s.get("command", [])]
    assert len(evaluators) == 2
    assert services["traffic"]["profiles"] == ["traffic"]
    assert {"prometheus", "grafana", "alertmanager", "topics"} <= set(services)
    third_party = [s["image"] for name, s in services.items() if "build" not in s]
    assert all(":" in i and not i.endswith(":latest") for i in third_party), third_party
    # Every file compose mounts is in the repository.
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    # Prometheus scrapes both workers on the port they serve.
    prometheus = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = [t for job in prometheus["scrape_configs"] if job["job_name"] == "shadowcanary"
               for c in job["static_configs"] for t in c["targets"]]
    assert sorted(targets) == [f"{name}:9464" for name in sorted(evaluators)]


def test_grafana_provisioning_and_dashboard_hold_together():
    dashboards = list((DEPLOY / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for path in dashboards:
        board = json.loads(path.read_text())
        titles = [p["title"] for p in board["panels"]]
        assert len(titles) == len(set(titles))
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]
        assert board["annotations"]["list"], "decisions are shown as annotations"
    text = "\n".join(p.read_text() for p in dashboards)
    for wanted in ("shadowcanary_rollout_traffic_percent", "shadowcanary_guardrail_value", "shadowcanary_error_ratio",
                   "shadowcanary_latency_seconds", "shadowcanary_label_coverage_ratio",
                   "shadowcanary_label_delay_seconds", "shadowcanary_drift_score",
                   "shadowcanary_rollout_decisions_total", "shadowcanary_consumer_lag_records"):
        assert wanted in text, wanted
    assert all(queried_metrics().values())


def test_the_argo_and_flagger_examples_ask_the_apis_endpoints():
    """The AnalysisTemplate's web URL is the verdict endpoint, its conditions read the verdict's
    values; each Flagger webhook names a kind the API answers, with the model in its metadata."""
    from urllib.parse import urlsplit

    import yaml

    from evaluators.policy.verdicts import FLAGGER_KINDS, verdict_of

    template = yaml.safe_load((DEPLOY / "argo-rollouts" / "analysis-template.yaml").read_text())
    metric = template["spec"]["metrics"][0]
    assert template["kind"] == "AnalysisTemplate" and template["apiVersion"] == "argoproj.io/v1alpha1"
    path = urlsplit(metric["provider"]["web"]["url"]).path
    assert path == "/v1/rollouts/{{args.model}}/verdict"
    names = set(verdict_of("m", None, None).as_json())
    assert metric["successCondition"] == 'result.verdict == "pass"' and "verdict" in names
    assert metric["failureCondition"] == 'result.verdict == "fail"'
    canary = yaml.safe_load((DEPLOY / "flagger" / "canary.yaml").read_text())
    assert canary["kind"] == "Canary" and canary["apiVersion"] == "flagger.app/v1beta1"
    for hook in canary["spec"]["analysis"]["webhooks"]:
        assert urlsplit(hook["url"]).path == f"/v1/flagger/{hook['type']}" and hook["type"] in FLAGGER_KINDS
        assert hook["metadata"]["model"] == "fraud"
