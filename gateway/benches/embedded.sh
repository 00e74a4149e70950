#!/usr/bin/env bash
# Embedded defaults at work, as a user runs them (docs/performance.md, "On
# embedded defaults" and "Idle, with a history"):
#
#   bash gateway/benches/embedded.sh load BINARY [MESSAGES]
#       a fresh data directory, BINARY on embedded defaults, MESSAGES
#       ADT^A04 from mllp-load over 8 connections: its throughput and ACK
#       latencies. Run two binaries alternately to compare them.
#   bash gateway/benches/embedded.sh idle BINARY [MESSAGES]
#       fills a data directory with MESSAGES (default 20000), waits until
#       every delivery is over, restarts BINARY on it and measures its CPU
#       and the bytes it reads over 60 s of idling; then the same with the
#       partial indexes of migration 7 dropped (what the depth sample did
#       before them).
#
# Needs: release builds of BINARY and of ../shared/tools/mllp-load
# (cargo build --release --manifest-path ../shared/tools/mllp-load/Cargo.toml),
# sqlite3, bc.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?load or idle}
BIN=$(realpath "${2:?a passerelle binary}")
MESSAGES=${3:-20000}
LOAD=${MLLP_LOAD:-$(realpath ../shared/tools/mllp-load/target/release/mllp-load)}
WORK=$(mktemp -d)
cleanup() {
  [ -f "$WORK/gateway.pid" ] && kill "$(cat "$WORK/gateway.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"
start() { "$BIN" > gateway.log 2>&1 & echo $! > gateway.pid; sleep 4; }
stop() { kill "$(cat gateway.pid)"; while kill -0 "$(cat gateway.pid)" 2>/dev/null; do sleep 0.2; done; rm gateway.pid; }
sample() { # pid seconds -> CPU percent of a core and bytes read per second
  local pid=$1 secs=$2 hz t0 t1 r0 r1
  hz=$(getconf CLK_TCK)
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat"); r0=$(awk '/^rchar/{print $2}' "/proc/$pid/io")
  sleep "$secs"
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat"); r1=$(awk '/^rchar/{print $2}' "/proc/$pid/io")
  echo "cpu $(echo "scale=3; ($t1-$t0)*100/($hz*$secs)" | bc) % of a core, read $(( (r1-r0)/secs )) bytes/s"
}
start
"$LOAD" --port 2575 --messages "$MESSAGES" --connections 8
[ "$MODE" = load ] && exit 0
# Every message delivered to the local target (a message not yet mapped
# has no outbox row, so the outbox's pending rows alone can say 0 early).
for _ in $(seq 1 300); do
  left=$(sqlite3 "file:data/passerelle.db?mode=ro" \
    "SELECT $MESSAGES - count(*) FROM outbox WHERE state = 'delivered'" 2>/dev/null || echo busy)
  [ "$left" = 0 ] && break
  sleep 2
done
stop
echo "database: $(du -h data/passerelle.db | cut -f1), journal inbox: $(du -h data/journal.db | cut -f1)"
start; sleep 10; echo "idle, with the indexes:   $(sample "$(cat gateway.pid)" 60)"; stop
sqlite3 data/passerelle.db "DROP INDEX outbox_undelivered; DROP INDEX outbox_patient_open;"
start; sleep 10; echo "idle, indexes dropped:    $(sample "$(cat gateway.pid)" 60)"; stop
