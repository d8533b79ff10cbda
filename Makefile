# Thin wrappers over cargo and the scripts in scripts/. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: help build run images test test-deps lint fmt bench bench-quick bench-kubedns clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## Build the three binaries (release)
	$(CARGO) build --release --bins

run: ## Build (dev profile) and run the pod's processes on loopback, fed by the demo cluster-state file
	scripts/run-local.sh

images: ## Build the three container images (needs a Docker engine; fails without one)
	scripts/build-images.sh

test-deps: ## Install what the tests need (dig, dnsmasq, dnsperf)
	scripts/install-test-deps.sh

test: test-deps lint ## Install test dependencies, check formatting and lints, run every test
	$(CARGO) test --workspace

# rustfmt and clippy are rustup components; a toolchain without them skips that check with a
# notice rather than failing the tests.
lint: ## Formatting and clippy
	@if $(CARGO) fmt --version >/dev/null 2>&1; then $(CARGO) fmt --all -- --check; \
	else echo "rustfmt is not installed: skipping the formatting check"; fi
	@if $(CARGO) clippy --version >/dev/null 2>&1; then $(CARGO) clippy --workspace --all-targets -- -D warnings; \
	else echo "clippy is not installed: skipping lints"; fi

fmt: ## Format the code
	$(CARGO) fmt --all

bench-kubedns: test-deps ## dnsperf against kubedns with a synthetic cluster (10,000 Services)
	scripts/bench-kubedns.sh

bench-quick: test-deps ## The kubedns benchmark in under a minute (one short round each)
	QUICK=1 scripts/bench-kubedns.sh

bench: bench-kubedns ## Every benchmark

clean: ## Remove build output
	$(CARGO) clean
