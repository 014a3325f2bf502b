# The two commands: `make run` (everything, working, until Ctrl-C) and `make test`.
SHELL := /bin/bash
STACK := bash deploy/stack.sh

.PHONY: run test lint unit stack-up stack-down stack-status bench build

run:
	bash deploy/run.sh

build:
	cargo build --workspace --all-targets

# Formatting, lints and every test, against the local PostgreSQL and Kafka.
test: stack-up
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	eval "$$($(STACK) env)" && cargo test --workspace

bench: stack-up
	bash deploy/bench.sh

stack-up:
	@$(STACK) up >/dev/null

stack-down:
	@$(STACK) down

stack-status:
	@$(STACK) status
