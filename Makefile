# The two commands: `make demo` (set up + run the fraud flow on the embedded
# default, no servers) and `make test` (set up + run every test, starting a
# local Kafka broker and Redis when none is reachable).

# Installs come from uv.lock (uv sync --frozen): every checkout gets the versions the
# suite was green with. pyproject.toml keeps the compatible ranges for `pip install`.
PYTHON ?= python3
# Supported Pythons: bytewax 0.21.1 ships wheels for 3.8-3.12 only; the project needs 3.11+.
PYTHONS ?= 3.11 3.12
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# uv itself, pinned, in a small venv of its own (.tools): nothing installed by hand.
UV_VERSION := 0.13.9
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
# Installs write every package's bytecode (.pyc) once. Without it, a process started with
# PYTHONDONTWRITEBYTECODE=1 (common in containers and CI) compiles Feast, pandas, scikit-learn,
# ... from source at every start: about 3 s of CPU of a flow's start-up, in every process
# (docs/benchmarks.md, "Start-up"). The install takes about 40 s longer, once.
export UV_COMPILE_BYTECODE := 1
EVENTS ?= 20000
export STREAMSCORE_IO__GENERATOR_EVENTS ?= $(EVENTS)

.PHONY: help venv lock test-latest test-pythons audit data feast model demo demo-iot test test-fast test-deploy helm bench bench-quick kafka-up kafka-down redis-up redis-down registry-up registry-down clean docs

help:
	@echo "make demo       set up and score $(EVENTS) generated transactions (no servers needed)"
	@echo "make demo-iot   set up and score generated sensor readings"
	@echo "make test       set up and run all tests (starts Kafka, Redis and a schema registry locally if needed)"
	@echo "make test-deploy  the Helm chart: lint, render, validate, and the local rehearsal (docs/kubernetes.md)"
	@echo "make bench      all benchmarks, one table + output/bench/bench.json (minutes; BENCH_ARGS=--no-kafka)"
	@echo "make bench-quick  the same with fewer events (small machines: about 2 minutes)"
	@echo "make lock       update uv.lock to the newest versions pyproject.toml allows (then: make test)"
	@echo "make test-latest  the whole suite on the newest versions the ranges allow, not the lock (before a release)"
	@echo "make test-pythons the whole suite on every supported Python ($(PYTHONS)), each from the lock"
	@echo "make audit      pip-audit over the lock (known vulnerabilities)"
	@echo "make docs       build the docs site (mkdocs-material, strict) into site/"
	@echo "make kafka-up / kafka-down / redis-up / redis-down / registry-up / registry-down"

$(UV):
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# The project's environment, exactly as locked (the project itself editable, with the dev extra).
$(STAMP): pyproject.toml uv.lock | $(UV)
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 needed (bytewax 0.21.1 has no wheels past 3.12); set PYTHON=python3.11"'
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra dev --python $(PYTHON) --quiet
	touch $(STAMP)

venv: $(STAMP)

# Synthetic world: Feast source data + labelled training history.
data/history.parquet feature_repo/data/customer_profile.parquet: datagen/transactions.py datagen/sensors.py | $(STAMP)
	$(PY) -m datagen.transactions dataset

data: data/history.parquet

feature_repo/data/.materialized: feature_repo/data/customer_profile.parquet feature_repo/definitions.py feature_repo/feature_store.yaml
	cd feature_repo && ../$(VENV)/bin/feast apply
	cd feature_repo && ../$(VENV)/bin/feast materialize-incremental 2026-12-01T00:00:00
	touch $@

feast: feature_repo/data/.materialized

model: data feast
	$(PY) -m cli.train --if-missing

# A run owns its output folder (STREAMSCORE_IO__OUTPUT_DIR, default output/fraud or output/iot):
# it rewrites all three files, so the report reads exactly this run.
demo: model
	$(PY) -m bytewax.run dataflows.fraud:flow
	$(PY) -m monitoring.run_report "$${STREAMSCORE_IO__OUTPUT_DIR:-output/fraud}" --input $(STREAMSCORE_IO__GENERATOR_EVENTS)

demo-iot: feast
	$(PY) -m bytewax.run dataflows.iot:flow
	$(PY) -m monitoring.run_report "$${STREAMSCORE_IO__OUTPUT_DIR:-output/iot}" --input $(STREAMSCORE_IO__GENERATOR_EVENTS)

test: $(STAMP)
	bash scripts/test.sh

# Helm, pinned (scripts/helm.sh: go install into .tools/bin, like uv above).
helm:
	bash scripts/helm.sh install

# The Helm chart alone (make test runs these too): helm lint, helm template with the default and
# production values, the manifests against the Kubernetes schemas, and the start-up rehearsal.
test-deploy: $(STAMP) helm
	bash scripts/test.sh tests/deploy

# Update the lock: the newest versions pyproject.toml's ranges allow (README "Installing").
lock: | $(UV)
	$(UV) lock --upgrade
	@echo "uv.lock updated: run make test, then commit uv.lock with the change that needed it"

# What a user who runs `pip install` today gets: a fresh environment with the newest versions
# the ranges allow (not the lock), then the whole suite. Run it before a release.
test-latest: | $(UV)
	rm -rf .venv-latest
	$(UV) venv --quiet --python $(PYTHON) .venv-latest
	$(UV) pip install --quiet --refresh --python .venv-latest/bin/python --resolution highest -e '.[dev]'
	$(UV) pip freeze --python .venv-latest/bin/python > .venv-latest/versions.txt
	VENV=.venv-latest bash scripts/test.sh

# The whole suite on each supported Python, each environment built from the lock.
test-pythons: | $(UV)
	set -e; for v in $(PYTHONS); do \
	  py=$$(bash scripts/find-python.sh $$v); echo "== Python $$v: $$py"; \
	  $(MAKE) --no-print-directory VENV=.venv-python$$v PYTHON=$$py venv; \
	  VENV=.venv-python$$v bash scripts/test.sh; \
	done

# Known vulnerabilities in the locked versions (pip-audit, pinned; it asks PyPI's advisory data).
PIP_AUDIT_VERSION := 2.10.1
audit: | $(UV)
	$(UV) export --frozen --extra dev --no-emit-project --format requirements-txt --quiet > $(TOOLS)/requirements.lock.txt
	$(UV) tool run --quiet pip-audit@$(PIP_AUDIT_VERSION) --strict --disable-pip --require-hashes -r $(TOOLS)/requirements.lock.txt

test-fast: $(STAMP)
	$(PY) -m pytest -m "not kafka and not redis" -q

# One run, one table, one JSON file (benchmarks/run.py; README "Benchmarks").
# Starts the local Kafka broker if none answers (and stops it after); BENCH_ARGS=--no-kafka skips Kafka.
BENCH_ARGS ?=
bench: model
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: model
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

# The docs site (docs/ + mkdocs.yml) into site/; --strict: a broken link or anchor fails it.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

redis-up:
	bash scripts/redis.sh up

# A schema registry (Apicurio, Confluent API) for Avro and Protobuf topics (docs/schema-registry.md).
registry-up:
	bash scripts/registry.sh up

registry-down:
	bash scripts/registry.sh down

redis-down:
	bash scripts/redis.sh down

clean:
	rm -rf output data model_registry feature_repo/data .pytest_cache .venv-latest .venv-python3.*
