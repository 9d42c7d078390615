# openbell: two commands on a fresh machine.
#   make run    the main job: the platform's SLO workflow, end to end (becomes the gameday later)
#   make test   every test, against real promtool and a real Prometheus
# Both install what they need first (Debian packages, a virtualenv, pip), idempotently.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.openbell-installed
BUILD := build

GATEWAY := $(BUILD)/bin/openbell-gateway
GATEWAY_SRC := $(shell find services/gateway -name '*.go' -o -name go.mod -o -name go.sum 2>/dev/null)

.PHONY: setup system kafka run test lint bench bench-sandbox clean

setup: system kafka $(STAMP) $(GATEWAY)

system:
	@bash scripts/install-system.sh

# Apache Kafka's broker jars from Maven Central, into the user's cache (the sandbox runs them on Java 17).
kafka:
	@bash scripts/fetch-kafka.sh

# The WebSocket gateway is Go (the fan-out hot path); the Go module proxy supplies its dependencies.
$(GATEWAY): $(GATEWAY_SRC)
	cd services/gateway && go build -trimpath -o ../../$(GATEWAY) .

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The main job on the sandbox: the SLO workflow on the platform's specs (validate, explain, generate the
# rules in both formats, check them with promtool), then the platform itself up on this machine with
# those rules loaded, and its live SLO status. The sandbox stays up: `openbell sandbox down` stops it.
run: setup
	$(BIN)/openbell slo lint slo/
	$(BIN)/openbell slo explain slo/
	$(BIN)/openbell slo rules slo/ -o $(BUILD)/slo-rules.yaml
	$(BIN)/openbell slo rules slo/ --format prometheus-operator --namespace monitoring -o $(BUILD)/slo-prometheusrule.yaml
	promtool check rules $(BUILD)/slo-rules.yaml
	$(BIN)/openbell runbook list
	$(BIN)/openbell sandbox up
	@sleep 15  # a few scrapes, so the SLIs have rates to show
	$(BIN)/openbell slo status slo/

test: setup
	$(BIN)/ruff check cli services infra tests bench
	$(BIN)/mypy
	cd services/gateway && go vet ./... && go test ./...
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check cli services infra tests bench
	$(BIN)/mypy
	cd services/gateway && go vet ./...

bench: setup
	$(BIN)/python bench/cli_startup.py

# Minutes, and the whole machine: sandbox start-up time, then the gateway fan-out end to end.
bench-sandbox: setup
	$(BIN)/python bench/sandbox_up.py --runs 3
	$(BIN)/python bench/fanout.py

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache
