#!/usr/bin/env bash
# Whether the cost of a message grows with what is stored (the
# storage-and-pipeline issue's scale run; docs/performance.md):
#
#   bash gateway/benches/scale.sh [TOTAL] [STEP]
#   bash gateway/benches/pipeline.sh --scale [TOTAL] [STEP]     # the same
#
# One gateway on embedded defaults, on a fresh data directory, loaded with
# mllp-load's built-in ADT^A04 (a fresh patient each; 8 connections, one
# message in flight each) STEP messages at a time (default 100000) until
# TOTAL (default 1000000) are stored in the local repository. For each step:
# the ACK rate and p99, and the stored rate (STEP over the time from the
# step's first message until every message of it is delivered to local).
# Then the last step's stored rate against the first's (aim >= 0.80), and
# the gateway's CPU and bytes read over 60 s of idling after the last step
# (aim: under 0.5 % of a core, nothing read).
#
# PASSERELLE_BIN=path/to/passerelle measures that binary instead of
# building one. SCALE_DIR=path puts the data directory there (default a
# temporary directory; a million ADT^A04 take about 17 GB).
#
# Needs: cargo, sqlite3, python3, bc.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOTAL=${1:-1000000}
STEP=${2:-100000}
LOAD_DIR=$(realpath ../shared/tools/mllp-load)
if [ -z "${PASSERELLE_BIN:-}" ]; then
  cargo build --release -q -p gateway
  PASSERELLE_BIN=target/release/passerelle
fi
cargo build --release -q --manifest-path "$LOAD_DIR/Cargo.toml"
BIN=$(realpath "$PASSERELLE_BIN")
LOAD=$LOAD_DIR/target/release/mllp-load
WORK=${SCALE_DIR:-$(mktemp -d)}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -z "${SCALE_DIR:-}" ] && rm -rf "$WORK"
  return 0
}
trap cleanup EXIT

cd "$WORK"
rm -rf data
PASSERELLE_MLLP__LISTEN=127.0.0.1:2575 PASSERELLE_HTTP__LISTEN=127.0.0.1:8080 \
  PASSERELLE_LOG__LEVEL=warn "$BIN" > gateway.log 2>&1 &
PID=$!
for _ in $(seq 1 100); do
  (exec 3<>/dev/tcp/127.0.0.1/2575) 2>/dev/null && break
  sleep 0.1
done

# Messages acknowledged and not yet delivered to local: the outbox's open
# rows, the journal's unmapped rows and what the journal's inbox holds
# beyond what the main database absorbed. Each through an index that
# bounds it to what is still to do: this look must not cost more as the
# store grows, or it would measure itself.
left() {
  sqlite3 "file:data/passerelle.db?mode=ro" "ATTACH 'file:data/journal.db?mode=ro' AS inbox;
    SELECT (SELECT count(*) FROM outbox WHERE state <> 'delivered')
      + (SELECT count(*) FROM journal WHERE state IN ('received', 'mapping'))
      + coalesce((SELECT seq FROM inbox.sqlite_sequence WHERE name = 'inbox_messages'), 0)
      - (SELECT journal_id FROM journal_inbox_absorbed)" 2>/dev/null || echo busy
}

RESULTS=$WORK/results.tsv
: > "$RESULTS"
stored=0
step=0
while [ "$stored" -lt "$TOTAL" ]; do
  step=$((step + 1))
  start=$(date +%s.%N)
  out=$("$LOAD" --port 2575 --messages "$STEP" --connections 8 --window 1 --id-prefix "S$step-")
  while :; do
    l=$(left)
    [ "$l" = 0 ] && break
    kill -0 "$PID" 2>/dev/null || { echo "the gateway stopped" >&2; tail -5 gateway.log >&2; exit 1; }
    sleep 1
  done
  done_at=$(date +%s.%N)
  stored=$((stored + STEP))
  python3 - "$step" "$stored" "$STEP" "$start" "$done_at" "$out" >> "$RESULTS" <<'PY'
import sys
step, stored, count, start, done, out = sys.argv[1:7]
fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
if fields.get("acked_ok") != fields.get("sent"):
    sys.exit(f"step {step}: not every message was acknowledged: {out}")
rate = int(count) / (float(done) - float(start))
print("\t".join([step, stored, fields["msg_per_s"], fields["p99_ms"], f"{rate:.0f}"]))
PY
  tail -1 "$RESULTS" | awk -F'\t' '{printf "step %s (%s stored): ACK %s msg/s, p99 %s ms, stored %s msg/s\n", $1, $2, $3, $4, $5}'
done

# Idle after the last step: CPU ticks and bytes read over 60 s.
sleep 10
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' "/proc/$PID/stat"); r0=$(awk '/^rchar/{print $2}' "/proc/$PID/io")
sleep 60
t1=$(awk '{print $14+$15}' "/proc/$PID/stat"); r1=$(awk '/^rchar/{print $2}' "/proc/$PID/io")
echo "database: $(du -h data/passerelle.db | cut -f1)"
echo "idle after $stored: cpu $(echo "scale=3; ($t1-$t0)*100/($hz*60)" | bc) % of a core, read $(( (r1 - r0) / 60 )) bytes/s"
python3 - "$RESULTS" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
first, last = float(rows[0][4]), float(rows[-1][4])
print(f"stored rate, last step / first: {last / first:.2f} (aim >= 0.80)")
PY
