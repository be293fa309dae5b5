# SonicForge — the front door. `make` lists the targets.

CARGO_TARGET_DIR ?= $(HOME)/.cache/sonicforge/target
export CARGO_TARGET_DIR
CARGO ?= cargo
LISTEN ?= 127.0.0.1:8080
BIN_RELEASE := $(CARGO_TARGET_DIR)/release/sonicforge
BIN_DEBUG := $(CARGO_TARGET_DIR)/debug/sonicforge
BROWSER_TESTS := actors/tests/browser
LISTENERS ?= 1000
SECONDS ?= 60
KILLS ?= 100
CHAOS_SECONDS ?= 300
CHAOS_LISTENERS ?= 200
EVENTS_RATE ?= 25000
EVENTS_SECONDS ?= 60
# Seconds per corpus track of bench-mastering: 180, or SECONDS=N given on the command
# line (SECONDS's own default, 60, is loadtest's).
BENCH_MASTERING_SECONDS ?= $(if $(filter command line,$(origin SECONDS)),$(SECONDS),180)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Print every target with its description
	@awk 'BEGIN {FS = ":.*## "}; /^[a-zA-Z_-]+:.*## / {printf "  make %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the system packages needed to build (cmake, a C compiler)
	@scripts/install-deps.sh build

.PHONY: build
build: deps ## Build the engine in release mode
	$(CARGO) build --release --locked -p sonicforge-actors --bin sonicforge

.PHONY: run
run: build ## Build, then start the engine with its embedded defaults and print the player URL
	$(BIN_RELEASE) run --listen $(LISTEN)

.PHONY: check-config
check-config: build ## Check config/sonicforge.toml
	$(BIN_RELEASE) check-config --config config/sonicforge.toml

.PHONY: test
test: ## Format and lint checks, every test (on a throwaway Cassandra 5.0 node), the browser test and the API test (installs what is missing)
	@scripts/install-deps.sh test
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	$(CARGO) build --locked --workspace --all-targets
	@scripts/install-deps.sh cassandra
	scripts/cassandra.sh run -- $(CARGO) test --locked --workspace
	python3 -m unittest discover -s scripts -p 'test_*.py'
	scripts/check-alert-rules.sh
	$(MAKE) --no-print-directory test-chaos
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-api

.PHONY: test-chaos
test-chaos: ## Short seeded chaos run: about 20 kills in 60 s under 200 decoding WebSocket listeners
	@scripts/install-deps.sh build
	$(CARGO) build --locked -p sonicforge-actors --bin sonicforge -p sonicforge-loadtests --bin sonicforge-loadtests
	BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/chaos.sh 20 60 $(CHAOS_LISTENERS) \
		--baseline-secs 20 --quiet-secs 20 --report $(CARGO_TARGET_DIR)/chaos-short.json

.PHONY: test-browser
test-browser: ## Play a station in headless Chromium through the web player, and run it from the operator console
	@scripts/install-deps.sh test
	$(CARGO) build --locked -p sonicforge-actors --bin sonicforge
	cd $(BROWSER_TESTS) && npm ci --no-audit --no-fund --loglevel=error
	cd $(BROWSER_TESTS) && SONICFORGE_BIN=$(BIN_DEBUG) node --test

.PHONY: test-api
test-api: ## Schemathesis (pinned, in a venv under ~/.cache/sonicforge) against a debug engine: every operation of /api/openapi.json, all checks, no 5xx
	$(CARGO) build --locked -p sonicforge-actors --bin sonicforge
	BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/schemathesis.sh

.PHONY: bench
bench: deps ## Run the criterion benchmarks (generator, mixer, encoder, rings)
	$(CARGO) bench --locked -p sonicforge-engine

.PHONY: loadtest
loadtest: build ## Swarm of LISTENERS WebSocket listeners for SECONDS against a fresh release engine
	$(CARGO) build --release --locked -p sonicforge-loadtests
	scripts/loadtest.sh $(LISTENERS) $(SECONDS)

.PHONY: loadtest-vs-icecast
loadtest-vs-icecast: build ## SonicForge (HTTP and WebSocket) beside Icecast 2.4 at 20 and 100 ms writes: N listeners (default LISTENERS) for SECONDS each
	$(CARGO) build --release --locked -p sonicforge-loadtests
	scripts/loadtest-vs-icecast.sh $(or $(N),$(LISTENERS)) $(SECONDS)

.PHONY: loadtest-events
loadtest-events: ## Play events at EVENTS_RATE/s for EVENTS_SECONDS into a throwaway Cassandra 5.0 node (after a 30 s warm-up), then into SQLite
	@scripts/install-deps.sh cassandra
	$(CARGO) build --release --locked -p sonicforge-loadtests
	scripts/cassandra.sh fetch
	scripts/cassandra.sh run -- $(CARGO_TARGET_DIR)/release/sonicforge-loadtests events \
		--rate $(EVENTS_RATE) --warm-up 30 --seconds $(EVENTS_SECONDS) --batch 1024 --in-flight 16
	rm -f $(CARGO_TARGET_DIR)/loadtest-events.db $(CARGO_TARGET_DIR)/loadtest-events.db-*
	$(CARGO_TARGET_DIR)/release/sonicforge-loadtests events --sqlite $(CARGO_TARGET_DIR)/loadtest-events.db \
		--rate $(EVENTS_RATE) --warm-up 5 --seconds $(EVENTS_SECONDS) --batch 1024 --in-flight 4

.PHONY: chaos
chaos: build ## Full seeded chaos run: KILLS kills over CHAOS_SECONDS under CHAOS_LISTENERS listeners (SEED=N replays)
	$(CARGO) build --release --locked -p sonicforge-loadtests
	scripts/chaos.sh $(KILLS) $(CHAOS_SECONDS) $(CHAOS_LISTENERS) --assert-restart-latency \
		--baseline-secs 30 --quiet-secs 30 --report $(CARGO_TARGET_DIR)/chaos-full.json $(if $(SEED),--seed $(SEED))

.PHONY: bench-mastering
bench-mastering: build ## Our CPU and GPU mastering beside Matchering 2.0 and ffmpeg loudnorm on the test corpus, table to docs/PERFORMANCE.md (SECONDS=N per track)
	scripts/bench-mastering.sh $(BENCH_MASTERING_SECONDS)

.PHONY: db-up
db-up: ## Start a single-node Cassandra 5.0 on 127.0.0.1:9042 for development (data kept between runs)
	@scripts/install-deps.sh cassandra
	scripts/cassandra.sh fetch
	scripts/cassandra.sh start

.PHONY: db-down
db-down: ## Stop the Cassandra node of db-up
	scripts/cassandra.sh stop

.PHONY: test-cassandra-harness
test-cassandra-harness: ## Start a throwaway Cassandra node, write and read rows through CQL, stop it
	@scripts/install-deps.sh cassandra
	scripts/cassandra.sh run -- python3 scripts/cassandra_probe.py roundtrip

.PHONY: test-scylla
test-scylla: ## The ScyllaDB event-store tests (both stores agree, idempotent writes, db migrate) on a throwaway Cassandra 5.0 node
	@scripts/install-deps.sh cassandra
	$(CARGO) build --locked -p sonicforge-engine -p sonicforge-actors --tests
	scripts/cassandra.sh run -- $(CARGO) test --locked -p sonicforge-engine -p sonicforge-actors \
		--test scylla_store_writes_each_event_once --test event_stores_give_the_same_answers \
		--test db_migrate_command_is_idempotent

.PHONY: fmt
fmt: ## Format the code
	$(CARGO) fmt --all

.PHONY: clean
clean: ## Remove build outputs
	$(CARGO) clean
