#!/usr/bin/env bash
# End-to-end benchmark: MLLP -> journal -> map -> deliver to a FHIR server on
# loopback, for Passerelle on SQLite, Passerelle on PostgreSQL, and the peer
# gateway hl7v2-fhir-bridge, on the same messages and the same kind of
# target, in one run. Figures go to docs/performance.md.
#
#   bash gateway/benches/end_to_end.sh [MESSAGES] [CONNECTIONS]
#
# Needs: a release build of the gateway (cargo build --release -p gateway),
# the peers (bash ../shared/peers/setup.sh: the FHIR server and the bridge),
# PostgreSQL on 127.0.0.1:5432 (trust auth), and ../shared/tools/mllp-load.
#
# Load: mllp-load's built-in ADT^A04 (a French patient with an INS, a new
# patient per message), CONNECTIONS connections, one message in flight each.
# For each gateway: the ACK rate and latency (mllp-load), then the time until
# the FHIR server holds every patient (delivered rate). Passerelle ACKs once
# the message is journaled and delivers after; the bridge POSTs to the FHIR
# server before it ACKs, so its ACK rate is its delivered rate.
set -euo pipefail
cd "$(dirname "$0")/../.."
MESSAGES=${1:-500}
CONNECTIONS=${2:-8}
SHARED=../shared
PEERS=${PEERS_ROOT:-/tmp/peers}
WORK=$(mktemp -d)
UPSTREAM_PORT=18090
MLLP_PORT=12575
HTTP_PORT=18080
PG_SERVER=${PASSERELLE_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432}
PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$SHARED/tools/mllp-load/Cargo.toml" --target-dir "$WORK/mllp-load"
MLLP_LOAD="$WORK/mllp-load/release/mllp-load"
PASSERELLE=${PASSERELLE_BIN:-target/release/passerelle}

wait_http() {  # wait_http URL
  for _ in $(seq 1 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1" >&2; return 1
}

wait_tcp() {  # wait_tcp PORT
  for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on $1" >&2; return 1
}

start_upstream() {
  NODE_PATH="$PEERS/node/node_modules" node "$SHARED/peers/fhir_upstream.js" --port $UPSTREAM_PORT >/dev/null 2>&1 &
  UPSTREAM_PID=$!; PIDS+=("$UPSTREAM_PID")
  wait_http "http://127.0.0.1:$UPSTREAM_PORT/fhir/metadata"
}

patients_at_target() {
  curl -s "http://127.0.0.1:$UPSTREAM_PORT/fhir/Patient?_summary=count" | sed -n 's/.*"total":\([0-9]*\).*/\1/p'
}

# Runs the load, then waits for the target to hold every patient; prints
# "ack_line | delivered_per_s | seconds".
measure() {  # measure LABEL
  local start end ack
  start=$(date +%s.%N)
  ack=$("$MLLP_LOAD" --port $MLLP_PORT --messages "$MESSAGES" --connections "$CONNECTIONS" --window 1 --id-prefix "$1")
  for _ in $(seq 1 6000); do
    [ "$(patients_at_target)" = "$MESSAGES" ] && break
    sleep 0.1
  done
  end=$(date +%s.%N)
  [ "$(patients_at_target)" = "$MESSAGES" ] || { echo "$1: the target holds $(patients_at_target) of $MESSAGES patients" >&2; exit 1; }
  local held=""
  for type in Patient Encounter Organization; do
    held="$held $type=$(curl -s "http://127.0.0.1:$UPSTREAM_PORT/fhir/$type?_summary=count" | sed -n 's/.*"total":\([0-9]*\).*/\1/p')"
  done
  echo "$1 | $ack | $(echo "$MESSAGES / ($end - $start)" | bc -l | xargs printf '%.0f') delivered/s | $(echo "$end - $start" | bc -l | xargs printf '%.1f') s |$held"
}

passerelle_run() {  # passerelle_run LABEL STORAGE_TOML
  start_upstream
  cat > "$WORK/$1.toml" <<EOF
$2
[http]
listen = "127.0.0.1:$HTTP_PORT"
[mllp]
listen = "127.0.0.1:$MLLP_PORT"
[log]
level = "warn"
[delivery]
poll_interval_ms = 200
[targets.fhir]
kind = "fhir"
url = "http://127.0.0.1:$UPSTREAM_PORT/fhir"
allow_insecure = true
concurrency = 4
[[routes]]
name = "all"
targets = ["fhir"]
EOF
  "$PASSERELLE" --config "$WORK/$1.toml" 2>"$WORK/$1.log" &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$HTTP_PORT/ready"
  measure "$1"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  kill "$UPSTREAM_PID"; wait "$UPSTREAM_PID" 2>/dev/null || true
}

# The pipeline without a network target: the same load routed to the
# `local` target (Bundles stored in the same database), LOCAL_MESSAGES of
# them; done when the delivered counter reaches that number.
local_run() {
  local messages=${LOCAL_MESSAGES:-5000} start end ack delivered=0
  cat > "$WORK/local.toml" <<EOF
[storage]
data_dir = "$WORK/local-data"
[http]
listen = "127.0.0.1:$HTTP_PORT"
[mllp]
listen = "127.0.0.1:$MLLP_PORT"
[log]
level = "warn"
EOF
  "$PASSERELLE" --config "$WORK/local.toml" 2>"$WORK/local.log" &
  local pid=$!; PIDS+=("$pid")
  wait_http "http://127.0.0.1:$HTTP_PORT/ready"
  start=$(date +%s.%N)
  ack=$("$MLLP_LOAD" --port $MLLP_PORT --messages "$messages" --connections "$CONNECTIONS" --window 1 --id-prefix LOCAL)
  for _ in $(seq 1 6000); do
    delivered=$(curl -s -H "Authorization: Bearer $(cat "$WORK/local-data/local-admin.key")" "http://127.0.0.1:$HTTP_PORT/metrics" \
      | sed -n 's/^passerelle_delivery_attempts_total{result="delivered",target="local"} \([0-9]*\)/\1/p')
    [ "${delivered:-0}" = "$messages" ] && break
    sleep 0.05
  done
  end=$(date +%s.%N)
  echo "passerelle-sqlite-local ($messages messages) | $ack | $(echo "$messages / ($end - $start)" | bc -l | xargs printf '%.0f') delivered/s | $(echo "$end - $start" | bc -l | xargs printf '%.1f') s | delivered=$delivered"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "messages: $MESSAGES, connections: $CONNECTIONS, $(nproc) cores, $(uname -srm)"
local_run
passerelle_run passerelle-sqlite "[storage]
data_dir = \"$WORK/data\""

DB=passerelle_bench_$$
psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
passerelle_run passerelle-postgres "[storage]
backend = \"postgres\"
postgres_url = \"$PG_SERVER/$DB\""
psql "$PG_SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" >/dev/null

start_upstream
"$PEERS/venv-hl7v2-fhir-bridge/bin/python" -m v2fhir serve --config "$SHARED/peers/v2fhir-bridge.toml" \
  --host 127.0.0.1 --port $MLLP_PORT --fhir-url "http://127.0.0.1:$UPSTREAM_PORT/fhir" >"$WORK/bridge.log" 2>&1 &
BRIDGE_PID=$!; PIDS+=("$BRIDGE_PID")
wait_tcp $MLLP_PORT
measure hl7v2-fhir-bridge
