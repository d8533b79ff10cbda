#!/usr/bin/env bash
# Runs the pod's processes on loopback, wired as in manifests/kube-dns.yaml but on unprivileged
# ports: kubedns fed by the bundled demo cluster-state file, dnsmasq-rs in front of it, healthz
# probing both, and a demo upstream (fake-upstream) answering names under example.com. in place
# of the resolvers outside the cluster. Ctrl-C stops them all.
#
# It builds what it runs first, in the dev profile (PROFILE=release for optimised binaries):
# a dev build is several times quicker from scratch and answers a person typing dig just as
# well; `make bench` is where speed is measured.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-dev}
STATE=${STATE:-tests/fixtures/state/demo.yaml}
ADDR=127.0.0.1
DNS_PORT=${DNS_PORT:-1053}              # dnsmasq-rs (53 in the pod)
UPSTREAM_PORT=${UPSTREAM_PORT:-1054}    # fake-upstream (the node's resolvers in a cluster)
KUBEDNS_PORT=${KUBEDNS_PORT:-10053}     # kubedns
READINESS_PORT=${READINESS_PORT:-8081}  # kubedns /readiness and /cache
KUBEDNS_METRICS_PORT=${KUBEDNS_METRICS_PORT:-10055}
SIDECAR_PORT=${SIDECAR_PORT:-10054}     # healthz
DNSMASQ_METRICS_PORT=${DNSMASQ_METRICS_PORT:-10056}

case "$PROFILE" in
  dev) BIN=target/debug ;;
  *) BIN=target/$PROFILE ;;
esac
echo "building kubedns, dnsmasq-rs, healthz and fake-upstream ($PROFILE profile)"
cargo build --profile "$PROFILE" -p kubedns -p dnsmasq-rs -p healthz -p test-support \
  --bin kubedns --bin dnsmasq-rs --bin healthz --bin fake-upstream

pids=()
stop() {
  trap - INT TERM EXIT
  # On Ctrl-C the terminal has already sent SIGINT to every process, and a second signal would
  # cut their drain short: give them a moment before sending SIGTERM to whatever is left.
  if [ "$1" = INT ]; then
    for _ in $(seq 1 30); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
  fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped"
}
trap 'stop INT' INT
trap 'stop TERM' TERM
trap 'stop EXIT' EXIT

"$BIN/fake-upstream" --listen "$ADDR:$UPSTREAM_PORT" --zone example.com. &
pids+=($!)

# kubedns asks the upstream itself for the targets of ExternalName Services, as it asks the
# node's resolvers in a pod; its NOTIFY tells dnsmasq-rs to drop changed names at once.
"$BIN/kubedns" --cluster-state "$STATE" --dns-bind-address "$ADDR" --dns-port "$KUBEDNS_PORT" \
  --http-bind-address "$ADDR" --healthz-port "$READINESS_PORT" --metrics-port "$KUBEDNS_METRICS_PORT" \
  --nameservers "$ADDR:$UPSTREAM_PORT" --notify "$ADDR:$DNS_PORT" &
pids+=($!)

# The manifest's dnsmasq arguments, with loopback ports and the demo upstream instead of
# /etc/resolv.conf.
"$BIN/dnsmasq-rs" -v=2 -kubednsServer="$ADDR:$KUBEDNS_PORT" -- -k --port="$DNS_PORT" \
  --listen-address="$ADDR" --cache-size=1000 --no-negcache --log-facility=- \
  --server="/cluster.local/$ADDR#$KUBEDNS_PORT" --server="/in-addr.arpa/$ADDR#$KUBEDNS_PORT" \
  --server="/ip6.arpa/$ADDR#$KUBEDNS_PORT" --no-resolv --server="$ADDR#$UPSTREAM_PORT" \
  --metrics-bind-address="$ADDR" --metrics-port="$DNSMASQ_METRICS_PORT" &
pids+=($!)

"$BIN/healthz" --prometheus-addr "$ADDR" --prometheus-port "$SIDECAR_PORT" \
  --dnsmasq-addr "$ADDR" --dnsmasq-port "$DNS_PORT" \
  --probe "kubedns,$ADDR:$KUBEDNS_PORT,kubernetes.default.svc.cluster.local,5,SRV" \
  --probe "dnsmasq,$ADDR:$DNS_PORT,kubernetes.default.svc.cluster.local,5,SRV" &
pids+=($!)

# HTTP status of a GET, through bash's /dev/tcp so that nothing beyond bash is needed.
http_status() {
  local port=$1 path=$2 line
  exec 3<>"/dev/tcp/$ADDR/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$ADDR" >&3
  read -r _ line _ <&3 || line=0
  exec 3<&-
  echo "$line"
}

# kubedns is ready after its first full sync; healthz once both probes passed (within one
# probe interval).
for _ in $(seq 1 100); do
  if [ "$(http_status "$READINESS_PORT" /readiness 2>/dev/null)" = 200 ] &&
    [ "$(http_status "$SIDECAR_PORT" /healthz 2>/dev/null)" = 200 ]; then
    break
  fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited during start-up; see above" >&2; exit 1; }
  done
  sleep 0.1
done

front="@$ADDR -p $DNS_PORT"
try() { printf '  %-66s # %s\n' "$1" "$2"; }
echo
echo "Running: dnsmasq-rs on $ADDR:$DNS_PORT, kubedns on $ADDR:$KUBEDNS_PORT, healthz on $ADDR:$SIDECAR_PORT,"
echo "the demo upstream (example.com.) on $ADDR:$UPSTREAM_PORT. Try (dig comes with 'make test-deps'):"
try "dig $front kubernetes.default.svc.cluster.local" "a ClusterIP Service"
try "dig $front db.shop.svc.cluster.local" "a headless Service: its ready endpoints"
try "dig $front _http._tcp.web.shop.svc.cluster.local SRV" "SRV for a named port"
try "dig $front -x 10.244.1.10" "PTR of a headless endpoint"
try "dig $front 10-244-1-5.shop.pod.cluster.local" "a pod name"
try "dig $front payments.shop.svc.cluster.local" "ExternalName: CNAME and its target"
try "dig $front www.example.com" "an external name, from the upstream"
try "dig $front CH TXT hits.bind" "dnsmasq's cache statistics"
try "curl -s http://$ADDR:$SIDECAR_PORT/healthz" "healthz's verdict on both"
try "curl -s http://$ADDR:$READINESS_PORT/readiness" "kubedns synced?"
try "curl -s http://$ADDR:$READINESS_PORT/cache" "kubedns's records as JSON"
echo "Edit $STATE and the answers follow within a second. Ctrl-C stops everything."
wait -n "${pids[@]}"
