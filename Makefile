# Front door of the project. `make demo` and `make test` work on a fresh machine: they
# install what they need (apt, pip, mvn) and start the local stack themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help install stack-up stack-down stack-status stack-reset demo test unit lint bench chaos

help:
	@echo "make demo          bring the stack up and run the migration demo"
	@echo "make test          install, start the stack, run the whole test suite, stop the stack"
	@echo "make stack-up      start the local stack (idempotent); stack-down, stack-status, stack-reset"
	@echo "make unit          unit tests only (no stack needed)"
	@echo "make lint          ruff"
	@echo "make bench         initial load (copy, debezium vs pg_dump/pg_restore) and lag at 500 tps on a 1 GB"
	@echo "                   database; BENCH_SIZE_MB, BENCH_TPS, BENCH_SECONDS, BENCH_SKIP (see README)"
	@echo "make chaos         fault matrix: 8 faults (kill -9 of Connect/Kafka/tasks/triggerer, PostgreSQL down or"
	@echo "                   restarted, Connect killed mid-cutover) under live writes; one table of recovery figures"

install:
	@scripts/install.sh

stack-up: install
	@scripts/stack.sh up

stack-down:
	@scripts/stack.sh down

stack-status:
	@scripts/stack.sh status

stack-reset:
	@scripts/stack.sh reset

demo: stack-up
	@scripts/with-stack-env .venv/bin/python scripts/demo.py

test: install
	@scripts/run-tests.sh

unit: install
	@.venv/bin/pytest -m unit

lint: install
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

bench: stack-up
	@scripts/with-stack-env .venv/bin/python scripts/bench.py

chaos: stack-up
	@scripts/chaos.sh
