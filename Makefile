# The two commands: `make demo` (set up + run the fraud flow on the embedded
# default, no servers) and `make test` (set up + run every test, starting a
# local Kafka broker and Redis when none is reachable).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
EVENTS ?= 20000
export SCORING_GENERATOR_EVENTS ?= $(EVENTS)

.PHONY: help venv data feast model demo demo-iot test test-fast bench bench-quick kafka-up kafka-down redis-up redis-down clean

help:
	@echo "make demo       set up and score $(EVENTS) generated transactions (no servers needed)"
	@echo "make demo-iot   set up and score generated sensor readings"
	@echo "make test       set up and run all tests (starts Kafka and Redis locally if needed)"
	@echo "make bench      all benchmarks, one table + output/bench/bench.json (minutes; BENCH_ARGS=--no-kafka)"
	@echo "make bench-quick  the same with fewer events (small machines: about 2 minutes)"
	@echo "make kafka-up / kafka-down / redis-up / redis-down"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "Python 3.11 or 3.12 needed (bytewax 0.21.1 has no wheels past 3.12); set PYTHON=python3.11"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
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
	$(PY) -m models.train --if-missing

# A run owns its output folder (SCORING_OUTPUT_DIR, default output/fraud or output/iot):
# it rewrites all three files, so the report reads exactly this run.
demo: model
	$(PY) -m bytewax.run dataflows.fraud:flow
	$(PY) -m dataflows.report "$${SCORING_OUTPUT_DIR:-output/fraud}" --input $(SCORING_GENERATOR_EVENTS)

demo-iot: feast
	$(PY) -m bytewax.run dataflows.iot:flow
	$(PY) -m dataflows.report "$${SCORING_OUTPUT_DIR:-output/iot}" --input $(SCORING_GENERATOR_EVENTS)

test: $(STAMP)
	bash scripts/test.sh

test-fast: $(STAMP)
	$(PY) -m pytest -m "not kafka and not redis" -q

# One run, one table, one JSON file (benchmarks/run.py; README "Benchmarks").
# Starts the local Kafka broker if none answers (and stops it after); BENCH_ARGS=--no-kafka skips Kafka.
BENCH_ARGS ?=
bench: model
	$(PY) -m benchmarks.run $(BENCH_ARGS)

bench-quick: model
	$(PY) -m benchmarks.run --quick $(BENCH_ARGS)

kafka-up:
	bash scripts/kafka.sh up

kafka-down:
	bash scripts/kafka.sh down

redis-up:
	bash scripts/redis.sh up

redis-down:
	bash scripts/redis.sh down

clean:
	rm -rf output data model_registry feature_repo/data .pytest_cache
