#!/usr/bin/env bash
# The kubedns benchmark: dnsperf against kubedns over loopback, kubedns fed through the fake API
# server (tests/support's fake-apiserver) with synthetic clusters of 1,000 and 10,000 Services,
# 10 endpoints each. Measures time from start to ready, RSS after sync, and per query kind the
# answered queries per second, per second of kubedns CPU ("per core"), kubedns CPU per 1,000
# queries, lost queries and dnsperf's latency. Writes a markdown report to stdout and to
# target/bench/kubedns.md; progress goes to stderr.
#
#   scripts/bench-kubedns.sh          # about 3 minutes after the build
#   QUICK=1 scripts/bench-kubedns.sh  # under a minute: one short round per measurement
#   KUBEDNS_ENV="TOKIO_WORKER_THREADS=1" scripts/bench-kubedns.sh  # environment for kubedns
#
# Method. Both clusters and both kubedns stay up for the whole run. dnsperf runs closed-loop:
# CLIENTS sockets with OUTSTANDING queries in flight, each sent as soon as an answer comes back,
# so kubedns is saturated; one more measurement holds a fixed rate (FIXED_RATE) below that. The
# ClusterIP A rounds alternate between the two cluster sizes, so that drift in the machine's
# speed during the run falls on both alike. A row is the round with the median queries per
# kubedns CPU-second; "range" is the lowest and highest round.
#
# CPU: kubedns's from /proc/<pid>/stat (utime+stime, all threads), dnsperf's from this shell's
# reaped children, the machine's from /proc/stat. "Other" is what the machine used beyond those
# two, i.e. other processes; it is tick-sampled and so approximate, and rounds where it exceeds
# NOISY_CORES are marked noisy.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  MAIN_ROUNDS=${MAIN_ROUNDS:-1} MAIN_SECONDS=${MAIN_SECONDS:-5}
  OTHER_ROUNDS=${OTHER_ROUNDS:-1} OTHER_SECONDS=${OTHER_SECONDS:-3}
  STARTS=${STARTS:-1} WARMUP_SECONDS=${WARMUP_SECONDS:-1}
else
  MAIN_ROUNDS=${MAIN_ROUNDS:-5} MAIN_SECONDS=${MAIN_SECONDS:-6}
  OTHER_ROUNDS=${OTHER_ROUNDS:-3} OTHER_SECONDS=${OTHER_SECONDS:-5}
  STARTS=${STARTS:-3} WARMUP_SECONDS=${WARMUP_SECONDS:-2}
fi
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-100}
FIXED_RATE=${FIXED_RATE:-40000}
# VAR=value words put in kubedns's environment.
KUBEDNS_ENV=${KUBEDNS_ENV:-}
SCALES=(1000 10000)
BIG=10000
ENDPOINTS_PER_SERVICE=10
# Loopback answers come back in well under a millisecond; a query without an answer after this
# long was dropped.
DNSPERF_TIMEOUT=1
NOISY_CORES=0.10

BIN=target/release
REPORT=target/bench/kubedns.md
TICKS=$(getconf CLK_TCK)

log() { echo "bench-kubedns: $*" >&2; }
die() {
  log "$*"
  exit 1
}

for tool in dnsperf curl python3; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is needed (make test-deps installs it)"
done

WORK=$(mktemp -d)
pids=()

# Forgets a process that has ended.
forget() {
  local kept=() p
  for p in "${pids[@]}"; do
    [ "$p" = "$1" ] || kept+=("$p")
  done
  pids=("${kept[@]}")
}

# Stops one process this script started.
stop() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A port the kernel reports free on 127.0.0.1: for TCP, or ("dns") for both UDP and TCP.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
while True:
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    if sys.argv[1] != "dns":
        break
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", port))
        break
    except OSError:
        tcp.close()
    finally:
        udp.close()
tcp.close()
print(port)
PY
}

# utime+stime of a process, in ticks (fields counted after the ")" closing the command name).
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# CPU of this shell's reaped children (dnsperf), in ticks.
children_ticks() { sed 's/^.*) //' "/proc/$$/stat" | awk '{ print $14 + $15 }'; }
# Non-idle CPU of the whole machine, in ticks.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
mb() { awk -v kb="$1" 'BEGIN { printf "%.1f", kb / 1024 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A FAKE_PID KUBEDNS_PID DNS_PORT

# Starts fake-apiserver for a cluster of $1 Services; sets FAKE_PID[$1] and API_URL.
start_fake() {
  local services=$1 out=$WORK/fake-$1.out deadline=$((SECONDS + 120))
  "$BIN/fake-apiserver" --services "$services" --endpoints $((services * ENDPOINTS_PER_SERVICE)) \
    >"$out" 2>"$WORK/fake-$services.err" &
  FAKE_PID[$services]=$!
  pids+=("$!")
  API_URL=""
  until [ -n "$API_URL" ]; do
    kill -0 "${FAKE_PID[$services]}" 2>/dev/null || die "fake-apiserver exited: $(cat "$WORK/fake-$services.err")"
    [ "$SECONDS" -lt "$deadline" ] || die "fake-apiserver did not start"
    sleep 0.01
    API_URL=$(sed -n 's/^listening on //p' "$out")
  done
}

# Starts kubedns against API_URL for cluster $1 and waits for /readiness; sets KUBEDNS_PID[$1],
# DNS_PORT[$1], READY_SECONDS, READY_CPU_TICKS and API_CPU_TICKS (fake-apiserver's CPU meanwhile).
start_kubedns() {
  local services=$1 healthz_port code deadline started ready pid log api0
  DNS_PORT[$services]=$(free_port dns)
  healthz_port=$(free_port tcp)
  log=$WORK/kubedns-${DNS_PORT[$services]}.log
  api0=$(cpu_ticks "${FAKE_PID[$services]}")
  started=$EPOCHREALTIME
  # shellcheck disable=SC2086 # KUBEDNS_ENV is a list of words.
  env $KUBEDNS_ENV "$BIN/kubedns" --kube-master-url "$API_URL" \
    --dns-bind-address 127.0.0.1 --dns-port "${DNS_PORT[$services]}" \
    --http-bind-address 127.0.0.1 --healthz-port "$healthz_port" \
    --metrics-port off --nameservers 127.0.0.1:1 >"$log" 2>&1 &
  pid=$!
  KUBEDNS_PID[$services]=$pid
  pids+=("$pid")
  deadline=$((SECONDS + 60))
  while true; do
    code=$(curl -s -o /dev/null --max-time 1 -w '%{http_code}' "http://127.0.0.1:$healthz_port/readiness" || true)
    [ "$code" = 200 ] && break
    kill -0 "$pid" 2>/dev/null || die "kubedns exited: $(tail -5 "$log")"
    [ "$SECONDS" -lt "$deadline" ] || die "kubedns not ready after 60 s: $(tail -5 "$log")"
    sleep 0.01
  done
  ready=$EPOCHREALTIME
  READY_SECONDS=$(awk -v a="$started" -v b="$ready" 'BEGIN { printf "%.3f", b - a }')
  READY_CPU_TICKS=$(cpu_ticks "$pid")
  API_CPU_TICKS=$(($(cpu_ticks "${FAKE_PID[$services]}") - api0))
}

# The query file for cluster $1 and query kind $2.
queries() {
  local file=$WORK/queries-$1-$2
  [ -f "$file" ] || "$BIN/fake-apiserver" --services "$1" --endpoints $(($1 * ENDPOINTS_PER_SERVICE)) \
    --write-queries "$file" --query-kind "$2"
  echo "$file"
}

# One dnsperf run against cluster $1's kubedns, asking query kind $2 for $3 seconds (more dnsperf
# arguments follow); prints one line of fields (see the awk below).
dnsperf_run() {
  local services=$1 kind=$2 seconds=$3
  shift 3
  local file out=$WORK/dnsperf.out kd=${KUBEDNS_PID[$services]} kd0 kd1 ch0 ch1 m0 m1 pid rcodes
  file=$(queries "$services" "$kind")
  kd0=$(cpu_ticks "$kd")
  ch0=$(children_ticks)
  m0=$(machine_ticks)
  dnsperf -s 127.0.0.1 -p "${DNS_PORT[$services]}" -d "$file" -l "$seconds" -t "$DNSPERF_TIMEOUT" \
    -c "$CLIENTS" -q "$OUTSTANDING" "$@" >"$out" 2>&1 &
  pid=$!
  pids+=("$pid")
  wait "$pid" || die "dnsperf failed: $(cat "$out")"
  forget "$pid"
  kd1=$(cpu_ticks "$kd")
  ch1=$(children_ticks)
  m1=$(machine_ticks)
  # Response codes as "NOERROR 100.00%".
  rcodes=$(sed -n 's/^ *Response codes: *//p' "$out" | sed -E 's/([A-Z]+) [0-9]+ \(([0-9.]+)%\)/\1 \2%/g')
  awk -v kd=$((kd1 - kd0)) -v perf=$((ch1 - ch0)) -v all=$((m1 - m0)) -v hz="$TICKS" \
    -v rcodes="${rcodes:-none}" '
    /Queries sent:/ { sent = $3 }
    /Queries completed:/ { done = $3 }
    /Queries lost:/ { lost = $3 }
    /Run time \(s\):/ { secs = $4 }
    /Average Latency/ { avg = $4; max = $8; gsub(/[,)]/, "", max) }
    /Latency StdDev/ { sd = $4 }
    END {
      if (secs == 0 || kd == 0 || done == 0) exit 1
      other = (all - kd - perf) / hz / secs
      # 1 per_core, 2 qps, 3 cpu_s_per_1k, 4 sent, 5 done, 6 lost, 7 avg_ms, 8 sd_ms, 9 max_ms,
      # 10 kubedns_cores, 11 dnsperf_cores, 12 other_cores, 13.. rcodes
      printf "%.0f %.0f %.6f %d %d %d %.3f %.3f %.3f %.2f %.2f %.2f %s\n",
        done / (kd / hz), done / secs, (kd / hz) * 1000 / done,
        sent, done, lost, avg * 1000, sd * 1000, max * 1000,
        kd / hz / secs, perf / hz / secs, (other > 0 ? other : 0), rcodes
    }' "$out" || die "cannot read dnsperf output: $(cat "$out")"
}

# One round: cluster $1, query kind $2, load label $3, $4 seconds, more dnsperf arguments after.
round() {
  local services=$1 kind=$2 load=$3 seconds=$4
  shift 4
  log "$services Services, $kind, load $load: ${seconds}s"
  dnsperf_run "$services" "$kind" "$seconds" "$@" >>"$WORK/rounds-$services-$kind-${load//\//_}"
}

# Appends the table row of cluster $1, query kind $2, load label $3 to $WORK/rows, and its
# median queries per CPU-second to $WORK/headline.
summarize() {
  local services=$1 kind=$2 load=$3 rounds lost sent low high
  rounds=$WORK/rounds-$services-$kind-${load//\//_}
  lost=$(awk '{ n += $6 } END { print n }' "$rounds")
  sent=$(awk '{ n += $4 } END { print n }' "$rounds")
  low=$(sort -n -k1,1 "$rounds" | head -1 | awk '{ print $1 }')
  high=$(sort -n -k1,1 "$rounds" | tail -1 | awk '{ print $1 }')
  sort -n -k1,1 "$rounds" | awk -v n="$(wc -l <"$rounds")" 'NR == int((n + 1) / 2)' >"$WORK/median"
  awk -v services="$services" -v kind="$kind" -v load="$load" -v lost="$lost" -v sent="$sent" \
    -v low="$low" -v high="$high" -v noisy="$NOISY_CORES" '{
      rcodes = $13; for (f = 14; f <= NF; f++) rcodes = rcodes " " $f
      flag = ($12 > noisy) ? " (noisy)" : ""
      printf "| %s | %s | %s | %d | **%d** (%d–%d) | %.4f | %d of %d | %.3f / %.3f / %.3f | %.2f / %.2f / %.2f%s | %s |\n",
        services, kind, load, $2, $1, low, high, $3, lost, sent, $7, $8, $9, $10, $11, $12, flag, rcodes
    }' "$WORK/median" >>"$WORK/rows"
  awk -v s="$services" -v k="$kind" -v l="$load" '{ print s, k, l, $1 }' "$WORK/median" >>"$WORK/headline"
}

log "building (release)"
cargo build --release -p kubedns -p test-support --bins >&2

: >"$WORK/rows"
: >"$WORK/headline"
: >"$WORK/startup"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
declare -A READY READY_RANGE READY_CPU API_CPU RSS_SYNCED OBJECTS

# Start: time to ready over STARTS starts per cluster; the last kubedns of each stays up.
for services in "${SCALES[@]}"; do
  log "$services Services: starting fake-apiserver"
  start_fake "$services"
  OBJECTS[$services]=$(sed -n 's/.* \([0-9]*\) objects$/\1/p' "$WORK/fake-$services.err")
  readies=() cpus=() api_cpus=()
  for ((i = 1; i <= STARTS; i++)); do
    [ "$i" -eq 1 ] || stop "${KUBEDNS_PID[$services]}"
    start_kubedns "$services"
    log "$services Services: ready after ${READY_SECONDS}s (start $i/$STARTS)"
    readies+=("$READY_SECONDS")
    cpus+=("$READY_CPU_TICKS")
    api_cpus+=("$API_CPU_TICKS")
  done
  READY[$services]=$(printf '%s\n' "${readies[@]}" | median)
  READY_RANGE[$services]="$(printf '%s\n' "${readies[@]}" | sort -n | head -1)–$(printf '%s\n' "${readies[@]}" | sort -n | tail -1)"
  READY_CPU[$services]=$(printf '%s\n' "${cpus[@]}" | median)
  API_CPU[$services]=$(printf '%s\n' "${api_cpus[@]}" | median)
  sleep 1
  RSS_SYNCED[$services]=$(status_kb "${KUBEDNS_PID[$services]}" VmRSS)
done

for services in "${SCALES[@]}"; do
  log "$services Services: warming up (${WARMUP_SECONDS}s)"
  dnsperf_run "$services" clusterip-a "$WARMUP_SECONDS" >/dev/null
done

# ClusterIP A at both sizes, alternating.
for ((i = 1; i <= MAIN_ROUNDS; i++)); do
  for services in "${SCALES[@]}"; do
    round "$services" clusterip-a max "$MAIN_SECONDS"
  done
done
for services in "${SCALES[@]}"; do
  summarize "$services" clusterip-a max
done

# The rest at the larger size.
for ((i = 1; i <= OTHER_ROUNDS; i++)); do
  round "$BIG" clusterip-a "$FIXED_RATE/s" "$MAIN_SECONDS" -Q "$FIXED_RATE"
done
summarize "$BIG" clusterip-a "$FIXED_RATE/s"
for kind in headless-a srv ptr nxdomain; do
  for ((i = 1; i <= OTHER_ROUNDS; i++)); do
    round "$BIG" "$kind" max "$OTHER_SECONDS"
  done
  summarize "$BIG" "$kind" max
done

for services in "${SCALES[@]}"; do
  pid=${KUBEDNS_PID[$services]}
  printf '| %s | %s | %s | **%s** (%s) | %.2f | %.2f | **%s** | %s | %s |\n' \
    "$services" $((services * ENDPOINTS_PER_SERVICE)) "${OBJECTS[$services]}" \
    "${READY[$services]}" "${READY_RANGE[$services]}" \
    "$(awk -v t="${READY_CPU[$services]}" -v hz="$TICKS" 'BEGIN { print t / hz }')" \
    "$(awk -v t="${API_CPU[$services]}" -v hz="$TICKS" 'BEGIN { print t / hz }')" \
    "$(mb "${RSS_SYNCED[$services]}")" "$(mb "$(status_kb "$pid" VmRSS)")" \
    "$(mb "$(status_kb "$pid" VmHWM)")" >>"$WORK/startup"
done
for services in "${SCALES[@]}"; do
  stop "${KUBEDNS_PID[$services]}"
  stop "${FAKE_PID[$services]}"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

per_core_small=$(awk -v s="${SCALES[0]}" '$1 == s && $2 == "clusterip-a" && $3 == "max" { print $4 }' "$WORK/headline")
per_core_big=$(awk -v s="$BIG" '$1 == s && $2 == "clusterip-a" && $3 == "max" { print $4 }' "$WORK/headline")
verdict() { if awk "BEGIN { exit !($1) }"; then echo met; else echo "**missed**"; fi; }

cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "# kubedns benchmark"
  echo
  echo "- Date: $started_at$([ "$QUICK" = 1 ] && echo ' (QUICK=1)')"
  echo "- Machine: $cpu_model, $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM"
  echo "- Kernel: $(uname -sr)"
  echo "- dnsperf $(dnsperf -h 2>&1 | sed -n 's/^Version //p'); kubedns $("$BIN/kubedns" --version 2>/dev/null | awk '{ print $2 }') (release build)${KUBEDNS_ENV:+, environment: $KUBEDNS_ENV}"
  echo "- Load average before / after: $load_before / $load_after"
  echo "- Clusters: fake-apiserver, $ENDPOINTS_PER_SERVICE endpoints per Service, 10% headless, 100 namespaces, EndpointSlices"
  echo "- dnsperf: UDP over loopback, $CLIENTS clients, $OUTSTANDING queries outstanding, timeout ${DNSPERF_TIMEOUT}s;" \
    "ClusterIP A: $MAIN_ROUNDS round(s) of ${MAIN_SECONDS}s per size, alternating; others: $OTHER_ROUNDS round(s) of ${OTHER_SECONDS}s"
  echo
  echo "## Start and memory"
  echo
  echo "| Services | Endpoints | API objects | Ready after, s (range) | kubedns CPU to ready, s | fake-apiserver CPU meanwhile, s | RSS after sync, MB | RSS after queries, MB | Peak RSS, MB |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  cat "$WORK/startup"
  echo
  echo "Ready after: from starting the process to \`/readiness\` answering 200 (polled every 10 ms), median of $STARTS start(s). RSS after sync: VmRSS 1 s after ready."
  echo
  echo "## Queries"
  echo
  echo "| Services | Query | Load | Answered q/s | Answered q/s per kubedns CPU-second (range) | kubedns CPU s per 1,000 q | Lost | Latency avg / sd / max, ms | CPU cores: kubedns / dnsperf / other | Response codes |"
  echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---|"
  cat "$WORK/rows"
  echo
  echo "Per kubedns CPU-second: answered queries divided by kubedns's utime+stime over the round, i.e. per core."
  echo "Load \"max\": closed loop, as fast as answers come back; dnsperf shares the machine's $(nproc) CPUs. \"Lost\": over all rounds."
  echo "\"other\": CPU used by neither kubedns nor dnsperf (approximate); \"(noisy)\" above $NOISY_CORES cores."
  echo
  echo "## Targets"
  echo
  echo "| Target | Measured | |"
  echo "|---|---:|---|"
  echo "| ≥ 100,000 answered q/s per core, ClusterIP A, $BIG Services | $per_core_big | $(verdict "$per_core_big >= 100000") |"
  echo "| < 10% slower at $BIG Services than at ${SCALES[0]} | $(awk -v a="$per_core_small" -v b="$per_core_big" 'BEGIN { printf "%+.1f%%", (b - a) * 100 / a }') | $(verdict "$per_core_big > 0.9 * $per_core_small") |"
  echo "| RSS after sync < 30 MB, $BIG Services | $(mb "${RSS_SYNCED[$BIG]}") MB | $(verdict "${RSS_SYNCED[$BIG]} < 30 * 1024") |"
  echo "| Ready within 2 s of start, $BIG Services | ${READY[$BIG]} s | $(verdict "${READY[$BIG]} < 2") |"
} >"$WORK/report.md"

mkdir -p "$(dirname "$REPORT")"
cp "$WORK/report.md" "$REPORT"
cat "$REPORT"
log "report written to $REPORT"
