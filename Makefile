# Fission: `make test` is what CI runs (.ci/run) and what the README tells you to run.
SWIFT ?= swift
SWIFT_TEST_FLAGS ?=

.PHONY: deps build test clean demo dev chaos

deps:
	@infra/local/install-deps.sh

build: deps
	$(SWIFT) build

# Builds everything (tests included) and runs the whole suite against a throwaway PostgreSQL
# cluster (or FISSION_TEST_DATABASE_URL when set).
test: deps
	python3 infra/check-deployment.py
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) infra/local/run-tests.sh $(SWIFT_TEST_FLAGS)

# The demo on the built-in local stack: PostgreSQL, the local broker and every service as
# separate processes; plays a group-buy and a bargain through the real APIs, then stops.
demo: build
	.build/debug/fission dev up --demo

# The demo's traffic for three minutes while services are SIGKILLed, the broker goes down and
# PostgreSQL restarts; then every database and topic is audited (non-zero exit on loss or doubling).
chaos: build
	.build/debug/fission chaos

# The local stack, kept running until Ctrl-C (URLs and development tokens are printed).
dev: build
	.build/debug/fission dev up

clean:
	rm -rf .build

# Release-build benchmarks; each figure is printed next to its reference measured in the same
# run and recorded in bench/results.json; the last step prints them all as one table with the
# targets. The benchmarks start the release service executables, so everything is built.
.PHONY: bench
bench:
	@infra/local/install-deps.sh --bench
	$(SWIFT) build -c release
	.build/release/fission-bench kafka
	.build/release/fission-bench assists
	.build/release/fission-bench relay
	.build/release/fission-bench events
	.build/release/fission-bench orders
	.build/release/fission-bench services
	.build/release/fission-bench report

# Schemathesis against every running service of the local stack, without a token and as a
# shopper, a merchant and an operator: no 5xx, every answer as documented in
# Services/*/openapi.yaml, every error application/problem+json. FUZZ_MAX_EXAMPLES tunes the depth.
.PHONY: fuzz
fuzz: build
	infra/fuzz/run.sh
