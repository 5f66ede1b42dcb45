# ShadowCanary: two commands do everything on a fresh clone.
#   make demo   the main job on a local Kafka broker
#   make test   the whole suite (starts its own broker unless KAFKA_BOOTSTRAP is set)
# `make setup` (run by both) creates .venv, installs the package and resolves Kafka's jars.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
KAFKA_LIB_STAMP := deploy/kafka/lib/.resolved
ASYNCAPI_STAMP  := tools/asyncapi-validate/node_modules/.installed
VERIFY_STAMP    := tools/command-verify/node_modules/.installed

.PHONY: setup test-tools demo test bench broker-up broker-down clean

setup: $(VENV)/.installed $(KAFKA_LIB_STAMP) $(ASYNCAPI_STAMP) $(VERIFY_STAMP)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[evaluator,test,demo]'
	@touch $@

$(KAFKA_LIB_STAMP): deploy/kafka/pom.xml
	rm -rf deploy/kafka/lib
	mvn -q -B -f deploy/kafka/pom.xml dependency:copy-dependencies
	@touch $@

# The AsyncAPI project's own parser, used by the tests to validate schemas/asyncapi.yaml.
$(ASYNCAPI_STAMP): tools/asyncapi-validate/package.json tools/asyncapi-validate/package-lock.json
	cd tools/asyncapi-validate && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# A second-language check of signed commands: Node verifies the test vectors and a command the
# evaluator signs through the broker (RFC 8785 via the `canonicalize` package, node:crypto).
$(VERIFY_STAMP): tools/command-verify/package.json tools/command-verify/package-lock.json
	cd tools/command-verify && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: setup
	$(BIN)/shadowcanary demo

COMPOSE_GO := github.com/compose-spec/compose-go/v2@v2.4.8
COMPOSE_SCHEMA := tools/compose-spec/compose-spec.json

# The Compose Specification's JSON schema, from the compose-go module that `docker compose` itself
# uses (Go module proxy): the compose file is checked against it without a Docker engine.
$(COMPOSE_SCHEMA):
	mkdir -p $(dir $@)
	cp "$$(go mod download -json $(COMPOSE_GO) | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/schema/compose-spec.json" $@
	chmod 644 $@

# promtool and prometheus (Debian's prometheus package) check the worker's /metrics output and
# deploy/prometheus, and scrape a worker in the integration tests; Alertmanager (Debian's
# prometheus-alertmanager) delivers a rollback to a webhook in tests/integration/test_alerting.py.
test-tools: $(COMPOSE_SCHEMA)
	@{ command -v promtool && command -v prometheus-alertmanager; } >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager \
	  || { $$SUDO apt-get update -qq && \
	       $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; }; }

test: setup test-tools
	$(PY) -m pytest

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[evaluator,bench]'
	@touch $@

bench: setup $(VENV)/.bench-installed
	$(PY) -m bench

broker-up: setup
	$(BIN)/shadowcanary broker up

broker-down:
	$(BIN)/shadowcanary broker down

clean:
	-$(BIN)/shadowcanary broker down --purge
	rm -rf $(VENV) deploy/kafka/lib .pytest_cache .hypothesis *.egg-info
