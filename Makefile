# The two commands of the README: `make run` and `make test`. Each does all of its set-up.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# make test runs its own stack on other ports and folders, so it never touches `make run`'s data.
TEST_ENV := STACK_DIR=.stack/test KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 \
            REDIS_URL=redis://127.0.0.1:16379/0 COMMAND_API_PORT=18001 QUERY_API_PORT=18002 \
            PROJECTOR_METRICS_PORT=18011 GATEWAY_PORT=18000

.PHONY: install run test test-faults lint unit bench bench-quick bench-soak stack-up stack-down stack-status topics clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + ")")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/cqrs run

# Every run starts from an empty test stack (FRESH=0 keeps the last one's data, for quick reruns):
# a kept stack grows by each run's events, which later rebuilds replay, and dated totals collide.
FRESH ?= 1
test: install lint
	@if [ "$(FRESH)" = 1 ]; then $(TEST_ENV) $(BIN)/cqrs stack down >/dev/null && rm -rf .stack/test; fi
	$(TEST_ENV) $(BIN)/cqrs exec -- $(BIN)/python -m pytest -m "not full_faults" $(PYTEST_ARGS)

# The whole fault suite (tests/faults): the cases `make test` runs and the longer ones. Each case
# kills or pauses the servers of a private stack, never the test stack's.
test-faults: install
	@if [ "$(FRESH)" = 1 ]; then $(TEST_ENV) $(BIN)/cqrs stack down >/dev/null && rm -rf .stack/test; fi
	$(TEST_ENV) $(BIN)/cqrs exec -- $(BIN)/python -m pytest tests/faults $(PYTEST_ARGS)

# Benchmarks on the test stack (started if needed): one report, bench/results/report.md (+ .json,
# plots). bench-quick is the harness's smoke test (small sizes, about a minute; no figure to quote).
bench: install
	$(TEST_ENV) $(BIN)/cqrs exec -- $(BIN)/python -m bench.report --full

bench-quick: install
	$(TEST_ENV) $(BIN)/cqrs exec -- $(BIN)/python -m bench.report --quick

# HTTP deposits at 300/s for 10 minutes through the whole chain: latency per minute, RSS, and the
# view's balances against the deposits answered (bench/results/soak.md). SOAK_ARGS to change it.
bench-soak: install
	$(TEST_ENV) $(BIN)/cqrs exec -- $(BIN)/python -m bench.soak $(SOAK_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

stack-up: install
	$(BIN)/cqrs stack up

stack-down: install
	$(BIN)/cqrs stack down

stack-status: install
	$(BIN)/cqrs stack status

topics: install
	$(BIN)/cqrs topics create

clean:
	-$(BIN)/cqrs stack down
	-$(TEST_ENV) $(BIN)/cqrs stack down
	rm -rf .stack
