#!/usr/bin/env bash
# The dependency policy (deny.toml) checked with cargo-deny: licenses, bans and sources always;
# advisories whenever the RustSec database can be fetched (it lives on GitHub). When it cannot,
# this says so and that check is skipped rather than failing on the network.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-cargo-tool.sh cargo-deny
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

checks=(licenses bans sources)
if cargo deny fetch db >/dev/null 2>&1; then
  checks+=(advisories)
else
  echo "deny: the RustSec advisory database is unreachable: skipping the advisories check" >&2
fi
cargo deny check --hide-inclusion-graph "${checks[@]}"
