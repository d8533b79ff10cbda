# Thin wrappers over cargo and the scripts in scripts/. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help build run images test test-deps lint deny fmt bench bench-quick bench-kubedns clean
.PHONY: fuzz fuzz-smoke
.PHONY: soak soak-smoke

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the three binaries (release)
	$(CARGO) build --release --bins

run: ## Build (dev profile) and run the pod's processes on loopback, fed by the demo cluster-state file
	scripts/run-local.sh

images: ## Build the container images, the pod's three and the single binary's (needs a Docker engine)
	scripts/build-images.sh

test-deps: ## Install what the tests need (dig, dnsmasq, dnsperf)
	scripts/install-test-deps.sh

# Every test, then the short forms of the fuzzing and the soak (on the dev binaries the tests
# built), as CI runs them.
test: test-deps lint deny ## Install test dependencies; check formatting, lints, dependencies; run every test, a short fuzz and a one-minute soak
	$(CARGO) test --workspace
	python3 scripts/bench_test.py
	$(MAKE) --no-print-directory fuzz-smoke
	$(MAKE) --no-print-directory soak-smoke

deny: ## The dependency policy (deny.toml): licenses, bans, sources, and advisories when reachable
	scripts/deny.sh

# rustfmt and clippy are rustup components; a toolchain without them skips that check with a
# notice rather than failing the tests.
lint: ## Formatting and clippy
	@if $(CARGO) fmt --version >/dev/null 2>&1; then $(CARGO) fmt --all -- --check; \
	else echo "rustfmt is not installed: skipping the formatting check"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then $(CARGO) clippy --workspace --all-targets -- -D warnings; \
	else echo "clippy is not installed: skipping lints"; fi

fmt: ## Format the code
	$(CARGO) fmt --all

# The soak test (tests/integration/tests/soak.rs): the pod's processes under API churn and a
# steady query load; the report goes to target/soak/report.md and report.json.
soak: ## The pod under API churn and steady load for SOAK_SECONDS (600), release build
	SOAK_SECONDS=$${SOAK_SECONDS:-600} $(CARGO) test --release -p integration-tests --test soak -- --ignored --nocapture

soak-smoke: ## The soak for one minute, on the dev build `cargo test` made
	SOAK_SECONDS=$${SOAK_SECONDS:-60} $(CARGO) test -p integration-tests --test soak -- --ignored --nocapture

# The benchmark needs dnsperf and Debian's dnsmasq (`make test-deps`); scripts/bench.py says so
# when they are missing.
bench: ## Compare the designs (pod, kubedns, single binary, real dnsmasq); writes docs/benchmarks.md
	$(CARGO) build --release --bins
	scripts/bench.py

bench-quick: ## The same in under 2 minutes (one short round each, fewer scales)
	$(CARGO) build --release --bins
	scripts/bench.py --quick

bench-kubedns: ## kubedns alone: record-store answers at 1,000 and 10,000 Services
	$(CARGO) build --release --bins
	scripts/bench.py --only records --designs kubedns --out target/bench/kubedns.md

fuzz: ## Fuzz every target for FUZZ_SECONDS (default 60) each; report in target/fuzz/report.md
	FUZZ_SECONDS=$${FUZZ_SECONDS:-60} scripts/fuzz.sh

fuzz-smoke: ## Fuzz every target for 10 s each, as CI does
	FUZZ_SECONDS=10 scripts/fuzz.sh

clean: ## Remove build output
	$(CARGO) clean
