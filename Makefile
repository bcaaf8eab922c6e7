# smsgate - developer entry points. `make test` on a fresh clone creates both virtualenvs.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .tools/sam
SAM := $(SAM_VENV)/bin/sam
# The project targets Python 3.11 (the Lambda runtime); fall back to python3 if it is absent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)

# Source folders that exist (ruff fails on a missing path).
PY_DIRS := $(wildcard layers functions sim local cli tests benchmarks)

export SAM_CLI_TELEMETRY := 0
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Tests never touch a real AWS account: moto only, with dummy credentials. Applied to the
# pytest command alone so that `make build` (and any later deploy) keeps the caller's AWS.
TEST_ENV := AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
	AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
	AWS_EC2_METADATA_DISABLED=true
# one pytest worker per core (`make test PYTEST_ARGS=` for a single process)
PYTEST_ARGS ?= -n auto

.PHONY: install lint test unit build format clean run demo bench soak

# dev (make test, lint, bench) includes local; local (make run, make demo) is the runtime alone:
# the project, moto's server and the services it serves, no lint or test tools.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[dev]'
	touch $@ $(VENV)/.installed-local

$(VENV)/.installed-local: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if [ $(VENV)/.installed -nt pyproject.toml ]; then :; \
	else $(PY) -m pip install -e '.[local]'; fi
	touch $@

# SAM CLI pins its own boto3, so it lives in its own virtualenv.
$(SAM):
	python3 -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install 'aws-sam-cli>=1.120,<2'

install: $(VENV)/.installed $(SAM)

lint: $(VENV)/.installed $(SAM)
	$(VENV)/bin/ruff check $(PY_DIRS)
	$(VENV)/bin/ruff format --check $(PY_DIRS)
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint

test: lint
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

# The fast tier: pure logic (rules, codes, routing, statuses, windows), no moto, no simulator
# (seconds). `make test` runs these and everything else.
UNIT_TESTS := tests/test_rules.py tests/test_routing.py tests/test_protection_rules.py tests/test_expressions.py tests/test_layering.py
unit: $(VENV)/.installed
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(TEST_ENV) $(PY) -m pytest $(UNIT_TESTS)

build: $(SAM)
	$(SAM) build

format: $(VENV)/.installed
	$(VENV)/bin/ruff format $(PY_DIRS)
	$(VENV)/bin/ruff check --fix $(PY_DIRS)

clean:
	rm -rf .aws-sam .pytest_cache .ruff_cache .mypy_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.tools -prune -o -name __pycache__ -type d -print0 \
		| xargs -0 rm -rf

# The whole gateway on 127.0.0.1 (moto server, simulators, local API, poller, schedules,
# alarms); Ctrl-C stops it. RUN_ARGS e.g. "--fast", "--no-view", "--demo", "--moto-port 5000".
RUN_ARGS ?=
run: $(VENV)/.installed-local
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(PY) -m smsgate_local run $(RUN_ARGS)

# Demo traffic against the running `make run` (or a stack started for it), with a summary.
demo: $(VENV)/.installed-local
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(PY) -m smsgate_local demo $(RUN_ARGS)

# Benchmarks against floors measured in the same run (< 10 min): benchmarks/results/latest.*
BENCH_ARGS ?=
bench: $(VENV)/.installed
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(TEST_ENV) $(PY) -m benchmarks.bench $(BENCH_ARGS)

# Reliability counts (< 10 min), non-zero exit on any failure: benchmarks/results/soak.json
SOAK_ARGS ?=
soak: $(VENV)/.installed
	env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE $(TEST_ENV) $(PY) -m benchmarks.soak $(SOAK_ARGS)
