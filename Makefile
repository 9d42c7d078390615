# openbell: two commands on a fresh machine.
#   make run    the main job: the opening-bell gameday on the sandbox (load, canary, chaos, one report)
#   make test   every test, against real promtool and a real Prometheus
# Both install what they need first (Debian packages, a virtualenv, pip), idempotently.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.openbell-installed
BUILD := build

GATEWAY := $(BUILD)/bin/openbell-gateway
GATEWAY_SRC := $(shell find services/gateway -name '*.go' -o -name go.mod -o -name go.sum 2>/dev/null)

.PHONY: setup system kafka kube pulumi run test lint bench bench-sandbox clean

setup: system kafka $(STAMP) $(GATEWAY)

system:
	@bash scripts/install-system.sh

# Apache Kafka's broker jars from Maven Central, into the user's cache (the sandbox runs them on Java 17).
kafka:
	@bash scripts/fetch-kafka.sh

# A real Kubernetes control plane for the tests and `openbell cluster up`: kube-apiserver, controller-manager,
# scheduler, etcd and KWOK built from the Go module proxy, the operators' CRDs from their modules, into the
# user's cache (cold: 6-20 minutes on 2 cores; then nothing).
kube:
	@bash scripts/kube-build.sh

# The real Pulumi engine for `openbell infra preview|up|destroy`: the pulumi CLI and its Kubernetes provider built from
# the Go module proxy into the user's cache (cold: about 10 minutes on 2 cores; then nothing). No plugin is ever
# downloaded: the AWS provider cannot be had here, so AWS stacks stay offline-planned (`infra plan --offline`).
pulumi:
	@bash scripts/pulumi-build.sh

# The WebSocket gateway is Go (the fan-out hot path); the Go module proxy supplies its dependencies.
$(GATEWAY): $(GATEWAY_SRC)
	cd services/gateway && go build -trimpath -o ../../$(GATEWAY) .

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The main job on the sandbox: the gameday. First the SLO workflow on the platform's specs (validate, generate
# the rules in both formats, check them with promtool); then `openbell gameday` brings the platform up on this
# machine with those rules loaded and runs gamedays/opening-bell.yaml: NYSE-open load, a gateway canary at the
# bell, replica and broker loss in steady trading, the SLOs' budgets at the close. One verdict (exit code) and
# one report: build/gameday/latest/index.html. Each run rehearses on a fresh sandbox: a running one is stopped and
# purged first (the last rehearsal's broker loss would still page in its kept history for about 30 minutes, and
# a gameday rightly refuses a platform that pages). The sandbox stays up after: `openbell sandbox down` stops it.
run: setup
	$(BIN)/openbell slo lint slo/
	$(BIN)/openbell slo rules slo/ -o $(BUILD)/slo-rules.yaml
	$(BIN)/openbell slo rules slo/ --format prometheus-operator --namespace monitoring -o $(BUILD)/slo-prometheusrule.yaml
	promtool check rules $(BUILD)/slo-rules.yaml
	$(BIN)/openbell sandbox down --purge
	$(BIN)/openbell gameday --plan gamedays/opening-bell.yaml --report $(BUILD)/gameday/latest

test: setup kube pulumi
	$(BIN)/ruff check cli services infra tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd services/gateway && go vet ./... && go test ./...
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check cli services infra tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd services/gateway && go vet ./...

bench: setup
	$(BIN)/python bench/cli_startup.py

# Minutes, and the whole machine: sandbox start-up time, the gateway fan-out end to end, the default gameday.
bench-sandbox: setup
	$(BIN)/python bench/sandbox_up.py --runs 3
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/gameday.py --runs 3

clean:
	rm -rf $(BUILD) .pytest_cache .mypy_cache .ruff_cache
