# The two commands: `make run` (everything, working, until Ctrl-C) and `make test`.
#
# PostgreSQL profiles (deploy/stack.sh): every target runs the local PostgreSQL in the DURABLE
# profile (fsync, synchronous_commit, full_page_writes on), except `make test`, which opts into
# the FAST, NON-DURABLE one for the test suite and says so. The profile is the running cluster's:
# the last `stack.sh up` sets it.
SHELL := /bin/bash
STACK := bash deploy/stack.sh

.PHONY: run test lint unit stack-up stack-down stack-status bench bench-ingest bench-qbo-sync bench-fyle-sync bench-import bench-mapping build

run:
	bash deploy/run.sh

build:
	cargo build --workspace --all-targets

# Formatting, lints and every test, against the local PostgreSQL and Kafka.
test:
	@echo "make test: PostgreSQL in the FAST, NON-DURABLE profile (test suite only; make run/bench/stack-up use the durable one)" >&2
	@STACK_PG_PROFILE=fast $(STACK) up >/dev/null
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	eval "$$($(STACK) env)" && cargo test --workspace

# deploy/bench.sh starts the stack itself, in the durable profile. `make bench` runs every
# benchmark (ingest's included); `make bench-ingest` only ingest's (docs/benchmarks.md).
bench:
	bash deploy/bench.sh

bench-ingest:
	bash deploy/bench.sh ingest

bench-qbo-sync:
	bash deploy/bench.sh qbo_sync

bench-fyle-sync:
	bash deploy/bench.sh fyle_sync

bench-import:
	bash deploy/bench.sh import

bench-mapping:
	bash deploy/bench.sh mapping

stack-up:
	@STACK_PG_PROFILE=durable $(STACK) up >/dev/null

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status
