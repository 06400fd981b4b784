# logcanary — `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
CARGO ?= cargo

# On CI (a clean checkout, built once) incremental compilation only costs: its caches are
# written and never read again. Developers keep it.
ifeq ($(CI),true)
export CARGO_INCREMENTAL := 0
endif

##@ The two commands

# Which build `migrate` (and so `setup`) uses: debug for `make test`, release for
# `make run`, so that each builds the workspace once.
PROFILE ?= debug
CARGO_PROFILE_FLAG = $(if $(filter release,$(PROFILE)),--release,)

run: PROFILE = release
run: setup build-release ## Set everything up and start the whole stack (Ctrl-C stops it)
	PROFILE=release bash scripts/run-stack.sh

test: setup ## Set everything up and run every test (real Postgres, RabbitMQ and model)
	$(CARGO) fmt --all -- --check
	$(CARGO) build --workspace --bins
	@if command -v cargo-nextest >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

##@ Pieces

setup: ## Install packages, start Postgres + RabbitMQ, create the database, fetch the model (idempotent)
	bash scripts/setup.sh
	$(MAKE) --no-print-directory migrate PROFILE=$(PROFILE)

# Builds every binary (not just ingest-api: a package built alone gets other dependency
# features than the workspace, and the next `cargo build --workspace` would compile much
# of it again), then applies the migrations.
migrate: ## Apply database migrations (under an advisory lock)
	$(CARGO) build --workspace --bins $(CARGO_PROFILE_FLAG)
	"$${CARGO_TARGET_DIR:-target}/$(PROFILE)/ingest-api" migrate

build-release:
	$(CARGO) build --release --workspace --bins

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

openapi: ## Regenerate proto/openapi.json from the code
	$(CARGO) run --quiet -p logcanary-ingest-api --bin ingest-api -- openapi > proto/openapi.json

bench: PROFILE = release
bench: setup build-release ## Load the stack and its parts, then the detector; prints figures (see BENCHMARKS.md)
	bash scripts/bench.sh
	bash scripts/bench-worker.sh
	bash scripts/bench-detector.sh

# Needs the model and ONNX Runtime only: no services, no database, no debug build.
eval: ## Replay a labelled JSONL file through the detector: make eval INPUT=file.jsonl [FEEDBACK=n]
	bash scripts/fetch-ml-assets.sh
	bash scripts/eval.sh $(INPUT) $(FEEDBACK)

eval-all: ## Every set of make eval-data with both baselines, without and with FEEDBACK (default 30)
	bash scripts/fetch-ml-assets.sh
	bash scripts/eval-all.sh $(or $(FEEDBACK),30)

eval-robustness: ## The eval on other draws and paces of the sets (seeds, 1 s / 30 min / 6 h gaps, real times, raw line headers, raw lines); one row each
	bash scripts/fetch-ml-assets.sh
	bash scripts/eval-robustness.sh $(or $(FEEDBACK),30)

eval-stack: PROFILE = release
eval-stack: setup build-release ## make eval through the running product: make eval-stack INPUT="a.jsonl b.jsonl" [FEEDBACK=n] (each file through a fresh stack)
	LOGCANARY_EVAL_STACK_FEEDBACK=$(or $(FEEDBACK),0) bash scripts/eval-stack.sh $(INPUT)

eval-data: ## Build labelled sets from ../shared/data/loghub into .cache/eval/
	python3 scripts/make-labelled-sets.py

bench-worker: PROFILE = release
bench-worker: setup build-release ## Worker drain on the 13 Loghub systems interleaved, cold and warm, one replica and two; POST -> scored latency
	bash scripts/bench-worker.sh

bench-detector: ## Detector benchmarks only (embedding ratio, lines/s, memory)
	bash scripts/bench-detector.sh

help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

.PHONY: run test setup migrate build-release lint fmt openapi bench eval eval-all eval-robustness eval-stack eval-data bench-worker bench-detector help
