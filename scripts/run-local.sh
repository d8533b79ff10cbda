#!/usr/bin/env bash
# Runs the pod's processes on loopback, wired as in manifests/kube-dns.yaml but on unprivileged
# ports, with kubedns fed by the bundled demo cluster-state file. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release}
STATE=${STATE:-tests/fixtures/state/demo.yaml}
ADDR=127.0.0.1
DNS_PORT=${DNS_PORT:-1053}              # dnsmasq-rs (53 in the pod)
KUBEDNS_PORT=${KUBEDNS_PORT:-10053}     # kubedns
READINESS_PORT=${READINESS_PORT:-8081}  # kubedns /readiness and /cache
KUBEDNS_METRICS_PORT=${KUBEDNS_METRICS_PORT:-10055}
SIDECAR_PORT=${SIDECAR_PORT:-10054}     # healthz
DNSMASQ_METRICS_PORT=${DNSMASQ_METRICS_PORT:-10056}

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

"$BIN/kubedns" --cluster-state "$STATE" --dns-bind-address "$ADDR" --dns-port "$KUBEDNS_PORT" \
  --http-bind-address "$ADDR" --healthz-port "$READINESS_PORT" --metrics-port "$KUBEDNS_METRICS_PORT" \
  --notify "$ADDR:$DNS_PORT" &
pids+=($!)

front="$ADDR -p $KUBEDNS_PORT"
if [ -x "$BIN/dnsmasq-rs" ]; then
  "$BIN/dnsmasq-rs" -k --port="$DNS_PORT" --listen-address="$ADDR" --cache-size=1000 \
    --server="/cluster.local/$ADDR#$KUBEDNS_PORT" --server="/in-addr.arpa/$ADDR#$KUBEDNS_PORT" \
    --server="/ip6.arpa/$ADDR#$KUBEDNS_PORT" --metrics-bind-address="$ADDR" \
    --metrics-port="$DNSMASQ_METRICS_PORT" &
  pids+=($!)
  front="$ADDR -p $DNS_PORT"
fi
if [ -x "$BIN/healthz" ]; then
  "$BIN/healthz" --prometheus-addr "$ADDR" --prometheus-port "$SIDECAR_PORT" \
    --dnsmasq-addr "$ADDR" --dnsmasq-port "$DNS_PORT" \
    --probe "kubedns,$ADDR:$KUBEDNS_PORT,kubernetes.default.svc.cluster.local,5,SRV" \
    --probe "dnsmasq,$ADDR:$DNS_PORT,kubernetes.default.svc.cluster.local,5,SRV" &
  pids+=($!)
fi

sleep 1
cat <<MSG

Running. Try:
  dig @$front kubernetes.default.svc.cluster.local
  dig @$front _http._tcp.web.shop.svc.cluster.local SRV
  dig @$front db.shop.svc.cluster.local
  dig @$front -x 10.96.10.20
  dig @$front 10-244-1-5.shop.pod.cluster.local
  curl -s http://$ADDR:$READINESS_PORT/readiness
  curl -s http://$ADDR:$READINESS_PORT/cache
  curl -s http://$ADDR:$SIDECAR_PORT/healthz
Edit $STATE and the answers follow within a second. Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
