#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for FUZZ_SECONDS (default 60), then writes
# target/fuzz/report.md (a table) and target/fuzz/report.jsonl (one JSON object per target:
# executions, execs/s, corpus size, coverage, findings). Exits non-zero if any target found a
# crash, a hang (an input over FUZZ_TIMEOUT seconds) or an out-of-memory input.
#
#   FUZZ_SECONDS=10 scripts/fuzz.sh                 # what `make fuzz-smoke` (CI) runs
#   FUZZ_TARGETS="kubedns_query tcp_framing" scripts/fuzz.sh
#
# Layout: the build goes to target/fuzz/build, the grown corpus to target/fuzz/corpus/<target>
# (seeded from the committed fuzz/corpus/<target>, which is never written to), this run's
# findings to target/fuzz/artifacts/<target>/, libFuzzer's output to target/fuzz/logs/. Reproduce a finding with
#   target/fuzz/build/<host triple>/release/<target> target/fuzz/artifacts/<target>/crash-…
#
# Build choices, made for a short build (CI runs this on every change) and fast executions:
# - `--sanitizer none`: the workspace forbids `unsafe`, so AddressSanitizer would only re-check
#   what the compiler already guarantees, at the cost of an instrumented, slower build and about
#   half the executions per second. Panics, overflow and the targets' own assertions are what
#   find bugs here.
# - `-O -a`: optimized, so each second covers more inputs, but with debug assertions and
#   overflow checks on, so arithmetic bugs panic as they would in the tests.
# - `--codegen-units 16`: cargo-fuzz defaults to 1 for release builds, which serializes the
#   codegen of the large dependencies (k8s-openapi, kube); 16 builds them in parallel for a
#   slightly slower fuzzer.
# cargo-fuzz passes -Z flags to cargo and rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TIMEOUT=${FUZZ_TIMEOUT:-10}
OUT=$ROOT/target/fuzz
BUILD_DIR=$OUT/build
CARGO=${CARGO:-cargo}
export RUSTC_BOOTSTRAP=1

# cargo-fuzz, pinned, into the user's cargo bin (a no-op when that version is there).
scripts/install-cargo-tool.sh cargo-fuzz
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <("$CARGO" fuzz list --fuzz-dir fuzz)
fi

build_started=$(date +%s)
"$CARGO" fuzz build --fuzz-dir fuzz -O -a --sanitizer none --codegen-units 16 \
    --target-dir "$BUILD_DIR"
build_seconds=$(($(date +%s) - build_started))
echo "fuzz targets built in ${build_seconds}s"

triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=$BUILD_DIR/$triple/release

report_md=$OUT/report.md
report_jsonl=$OUT/report.jsonl
mkdir -p "$OUT"
{
    echo "# Fuzzing report"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), ${FUZZ_SECONDS}s per target, build ${build_seconds}s."
    echo "cov: code edges reached; ft: libFuzzer features; corpus: inputs kept (files in target/fuzz/corpus/<target>)."
    echo
    echo "| target | executions | execs/s | corpus | cov | ft | findings |"
    echo "|---|---:|---:|---:|---:|---:|---|"
} >"$report_md"
: >"$report_jsonl"

# The last value of `key: value` on libFuzzer's status and final-stats lines.
fuzz_stat() {
    grep -oE "$1:? +[0-9]+" "$2" | tail -n 1 | grep -oE '[0-9]+$' || echo 0
}

failed=0
for target in "${targets[@]}"; do
    corpus=$OUT/corpus/$target
    artifacts=$OUT/artifacts/$target
    log=$OUT/logs/$target.log
    # Findings are this run's: earlier ones are gone (their inputs reproduce them).
    rm -rf "$artifacts"
    mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
    args=(
        "-max_total_time=$FUZZ_SECONDS"
        "-timeout=$FUZZ_TIMEOUT"
        -rss_limit_mb=2048
        -print_final_stats=1
        "-artifact_prefix=$artifacts/"
    )
    if [[ -f fuzz/dict/$target.dict ]]; then
        args+=("-dict=fuzz/dict/$target.dict")
    fi
    seeds=()
    if [[ -d fuzz/corpus/$target ]]; then
        seeds=("fuzz/corpus/$target")
    fi
    echo "fuzzing $target for ${FUZZ_SECONDS}s"
    status=0
    "$bin_dir/$target" "${args[@]}" "$corpus" "${seeds[@]}" >"$log" 2>&1 || status=$?

    execs=$(fuzz_stat 'stat::number_of_executed_units' "$log")
    rate=$(fuzz_stat 'stat::average_exec_per_sec' "$log")
    cov=$(fuzz_stat 'cov' "$log")
    ft=$(fuzz_stat 'ft' "$log")
    corpus_size=$(find "$corpus" -type f | wc -l)
    mapfile -t findings < <(find "$artifacts" -type f \
        \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | sort)
    if ((status != 0 && ${#findings[@]} == 0)); then
        # The fuzzer failed without writing an input (a setup panic, say): still a failure.
        findings=("exit-status-$status")
    fi
    found=${#findings[@]}
    if ((found > 0)); then
        failed=1
        echo "  $target: $found finding(s); see $log"
        printf '    %s\n' "${findings[@]}"
    fi
    names=$(printf '%s\n' "${findings[@]}" | sed '/^$/d' | xargs -r -n1 basename | paste -sd, -)
    echo "| $target | $execs | $rate | $corpus_size | $cov | $ft | ${found}${names:+ ($names)} |" >>"$report_md"
    printf '{"target":"%s","seconds":%s,"executions":%s,"execs_per_sec":%s,"corpus":%s,"cov":%s,"ft":%s,"findings":%s,"artifacts":"%s"}\n' \
        "$target" "$FUZZ_SECONDS" "$execs" "$rate" "$corpus_size" "$cov" "$ft" "$found" \
        "${artifacts#"$ROOT"/}" >>"$report_jsonl"
done

cat "$report_md"
echo
cat "$report_jsonl"
if ((failed)); then
    echo "fuzzing found problems: reproduce with $bin_dir/<target> <file>" >&2
    exit 1
fi
