#!/usr/bin/env bash
# What the ACK path and the local repository cost, as ratios measured in
# one run on one machine (the storage-and-pipeline issue's aims;
# docs/performance.md):
#
#   bash gateway/benches/pipeline.sh [MESSAGES] [ROUNDS]
#
# Builds the release gateway and ../shared/tools/mllp-load, then runs,
# ROUNDS times (default 3) and alternated so that the machine's drift
# falls on both, each of:
#   journal   a route that matches nothing: every message journaled and
#             ACKed, nothing mapped or stored (the ACK path alone);
#   defaults  embedded defaults: every message journaled, ACKed, mapped and
#             stored in the local repository, as a new user runs it;
# at 8 connections with one message in flight each (window 1), then eight
# (window 8), on a fresh data directory with fresh patients (mllp-load's
# built-in ADT^A04, MESSAGES of them, default 100000). For each run: the
# ACK rate and p99 (mllp-load), and for `defaults` the delivered-to-local
# rate (MESSAGES over the time from the first message until the outbox
# holds no undelivered row). Then the medians and the ratios the issue
# aims at.
#
# Not in this script yet (the issue asks for them too): the scale run to a
# million stored messages, and --backend postgres with one and two
# instances.
#
# PASSERELLE_BIN=path/to/passerelle measures that binary instead of
# building one (to compare two commits, run the script once for each).
#
# Needs: cargo, sqlite3, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
MESSAGES=${1:-100000}
ROUNDS=${2:-3}
LOAD_DIR=$(realpath ../shared/tools/mllp-load)
if [ -z "${PASSERELLE_BIN:-}" ]; then
  cargo build --release -q -p gateway
  PASSERELLE_BIN=target/release/passerelle
fi
cargo build --release -q --manifest-path "$LOAD_DIR/Cargo.toml"
BIN=$(realpath "$PASSERELLE_BIN")
LOAD=$LOAD_DIR/target/release/mllp-load
WORK=$(mktemp -d)
RESULTS=$WORK/results.tsv
cleanup() {
  [ -f "$WORK/gateway.pid" ] && kill "$(cat "$WORK/gateway.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat > "$WORK/journal.toml" <<'TOML'
# Journal only: no message type matches, so nothing is mapped or stored.
[[routes]]
name = "nothing"
message_types = ["ZZZ^Z99"]
targets = ["local"]
TOML

# run SETUP WINDOW ROUND: one gateway on a fresh data directory, one load.
run() {
  local setup=$1 window=$2 round=$3 dir args out start undelivered drained delivered
  dir=$WORK/$setup-$window-$round
  mkdir -p "$dir"
  args=()
  [ "$setup" = journal ] && args=(--config "$WORK/journal.toml")
  (cd "$dir" && exec "$BIN" "${args[@]}" > gateway.log 2>&1) &
  echo $! > "$WORK/gateway.pid"
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/2575) 2>/dev/null && break
    sleep 0.1
  done
  start=$(date +%s.%N)
  out=$("$LOAD" --port 2575 --messages "$MESSAGES" --connections 8 --window "$window" \
    --id-prefix "$setup$window$round")
  delivered=-
  if [ "$setup" = defaults ]; then
    while :; do
      undelivered=$(sqlite3 "file:$dir/data/passerelle.db?mode=ro" \
        "SELECT count(*) FROM outbox WHERE state <> 'delivered'" 2>/dev/null || echo busy)
      [ "$undelivered" = 0 ] && break
      # A gateway that died would leave rows undelivered for ever.
      kill -0 "$(cat "$WORK/gateway.pid")" 2>/dev/null || {
        echo "$setup window $window: the gateway stopped with $undelivered undelivered" >&2
        tail -5 "$dir/gateway.log" >&2
        exit 1
      }
      sleep 0.2
    done
    drained=$(date +%s.%N)
    delivered=$(python3 -c "print(round($MESSAGES / ($drained - $start)))")
  fi
  kill "$(cat "$WORK/gateway.pid")"
  wait "$(cat "$WORK/gateway.pid")" 2>/dev/null || true
  rm "$WORK/gateway.pid"
  rm -rf "$dir"
  python3 - "$setup" "$window" "$round" "$delivered" "$out" >> "$RESULTS" <<'PY'
import sys
setup, window, round_, delivered, out = sys.argv[1:6]
fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
if fields.get("acked_ok") != fields.get("sent"):
    sys.exit(f"{setup} window {window}: not every message was acknowledged: {out}")
print("\t".join([setup, window, round_, fields["msg_per_s"], fields["p99_ms"], delivered]))
PY
  tail -1 "$RESULTS" | awk -F'\t' '{printf "%-8s window %s round %s: ACK %s msg/s, p99 %s ms, delivered %s msg/s\n", $1, $2, $3, $4, $5, $6}'
}

for round in $(seq 1 "$ROUNDS"); do
  for window in 1 8; do
    run journal "$window" "$round"
    run defaults "$window" "$round"
  done
done

python3 - "$RESULTS" "$MESSAGES" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
def median(setup, window, column):
    values = [float(r[column]) for r in rows if r[0] == setup and r[1] == window and r[column] != "-"]
    return statistics.median(values)
print(f"\n{sys.argv[2]} ADT^A04 per run, medians of {len(rows) // 4} rounds:")
for window in ("1", "8"):
    journal, defaults = median("journal", window, 3), median("defaults", window, 3)
    delivered = median("defaults", window, 5)
    print(f"window {window}: journal only {journal:.0f} msg/s (p99 {median('journal', window, 4):.1f} ms); "
          f"embedded defaults {defaults:.0f} msg/s (p99 {median('defaults', window, 4):.1f} ms), "
          f"delivered to local {delivered:.0f} msg/s")
    print(f"  ACK rate on defaults / journal only: {defaults / journal:.2f} (aim >= 0.70); "
          f"delivered to local / journal only: {delivered / journal:.2f} (aim >= 0.30)")
PY
