#!/usr/bin/env bash
# What the ACK path and the local repository cost, as ratios measured in
# one run on one machine (the storage-and-pipeline issue's aims;
# docs/performance.md):
#
#   bash gateway/benches/pipeline.sh [--backend sqlite] [MESSAGES] [ROUNDS]
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
# holds a delivered row for each). Then the medians and the ratios the issue
# aims at.
#
#   bash gateway/benches/pipeline.sh --backend postgres [MESSAGES] [ROUNDS]
#
# runs instead, alternated the same way: `defaults` (SQLite, the figure to
# match), `pg1`, one gateway on a fresh database of the machine's
# PostgreSQL ($PASSERELLE_TEST_POSTGRES, default
# postgresql://postgres@127.0.0.1:5432), and `pg2`, two gateways on one
# fresh database, each loaded with half the messages at once; and prints
# delivered-to-local with one instance against SQLite, and two instances
# against one.
#
#   bash gateway/benches/pipeline.sh --scale [TOTAL] [STEP]
#
# runs the scale run instead (gateway/benches/scale.sh): one gateway loaded
# STEP messages at a time until TOTAL are stored, the stored rate of each
# step, and its idle CPU afterwards.
#
# PASSERELLE_BIN=path/to/passerelle measures that binary instead of
# building one (to compare two commits, run the script once for each).
#
# Needs: cargo, sqlite3, python3; with --backend postgres, psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${1:-}" = --scale ]; then
  shift
  exec bash gateway/benches/scale.sh "$@"
fi
BACKEND=sqlite
if [ "${1:-}" = --backend ]; then
  BACKEND=${2:?--backend sqlite or postgres}
  shift 2
fi
case $BACKEND in
  sqlite) SETUPS="journal defaults" ;;
  postgres) SETUPS="defaults pg1 pg2" ;;
  *) echo "--backend sqlite or postgres, not $BACKEND" >&2; exit 2 ;;
esac
MESSAGES=${1:-100000}
ROUNDS=${2:-3}
POSTGRES=${PASSERELLE_TEST_POSTGRES:-postgresql://postgres@127.0.0.1:5432}
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
stop_gateways() {
  local pid
  for pid in $(cat "$WORK/gateway.pids" 2>/dev/null); do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$WORK/gateway.pids"
}
cleanup() {
  stop_gateways
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

# undelivered SETUP DIR DATABASE: messages not yet delivered to local: all
# MESSAGES less the outbox rows delivered (a message still in the
# journal's inbox, or not yet mapped, has no outbox row to count).
undelivered() {
  local query="SELECT $MESSAGES - count(*) FROM outbox WHERE state = 'delivered'"
  case $1 in
    defaults) sqlite3 "file:$2/data/passerelle.db?mode=ro" "$query" 2>/dev/null || echo busy ;;
    *) psql -qtA "$POSTGRES/$3" -c "$query" 2>/dev/null || echo busy ;;
  esac
}

# run SETUP WINDOW ROUND: the setup's gateways on a fresh data directory
# (and database), one load split between them.
run() {
  local setup=$1 window=$2 round=$3 dir instances=1 database="" i args out start
  local left drained delivered pid loads
  dir=$WORK/$setup-$window-$round
  mkdir -p "$dir"
  [ "$setup" = pg2 ] && instances=2
  case $setup in
    pg1 | pg2)
      database=passerelle_bench_${setup}_${window}_$round
      psql -qtA "$POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $database" > /dev/null
      psql -qtA "$POSTGRES/postgres" -c "CREATE DATABASE $database" > /dev/null ;;
  esac
  for i in $(seq 1 "$instances"); do
    mkdir -p "$dir/$i"
    args=()
    [ "$setup" = journal ] && args=(--config "$WORK/journal.toml")
    if [ -n "$database" ]; then
      printf '[storage]\nbackend = "postgres"\npostgres_url = "%s"\ninstance_id = "bench-%s"\n' \
        "$POSTGRES/$database" "$i" > "$dir/$i/postgres.toml"
      args=(--config "$dir/$i/postgres.toml")
    fi
    (cd "$dir/$i" && PASSERELLE_MLLP__LISTEN=127.0.0.1:$((2574 + i)) \
      PASSERELLE_HTTP__LISTEN=127.0.0.1:$((8079 + i)) \
      exec "$BIN" "${args[@]}" > gateway.log 2>&1) &
    echo $! >> "$WORK/gateway.pids"
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/127.0.0.1/$((2574 + i))") 2>/dev/null && break
      sleep 0.1
    done
  done
  start=$(date +%s.%N)
  loads=()
  for i in $(seq 1 "$instances"); do
    "$LOAD" --port $((2574 + i)) --messages $((MESSAGES / instances)) --connections 8 \
      --window "$window" --id-prefix "$setup$window$round-$i" > "$dir/load-$i.txt" &
    loads+=($!)
  done
  wait "${loads[@]}"
  out=$(cat "$dir"/load-*.txt | tr '\n' '|')
  delivered=-
  if [ "$setup" != journal ]; then
    local last="" still=0
    while :; do
      left=$(undelivered "$setup" "$dir/1" "$database")
      [ "$left" = 0 ] && break
      # Nothing delivered for a minute: a message that never reaches the
      # outbox (its mapping failed) would keep the count above zero.
      if [ "$left" = "$last" ]; then still=$((still + 1)); else still=0; last=$left; fi
      if [ "$still" -ge 300 ]; then
        echo "$setup window $window: $left messages not delivered after a minute without progress" >&2
        exit 1
      fi
      # A gateway that died would leave rows undelivered for ever.
      for pid in $(cat "$WORK/gateway.pids"); do
        kill -0 "$pid" 2>/dev/null || {
          echo "$setup window $window: a gateway stopped with $left undelivered" >&2
          tail -5 "$dir"/*/gateway.log >&2
          exit 1
        }
      done
      sleep 0.2
    done
    drained=$(date +%s.%N)
    delivered=$(python3 -c "print(round($MESSAGES / ($drained - $start)))")
  fi
  stop_gateways
  rm -rf "$dir"
  [ -n "$database" ] && psql -qtA "$POSTGRES/postgres" -c "DROP DATABASE $database" > /dev/null
  python3 - "$setup" "$window" "$round" "$delivered" "$out" >> "$RESULTS" <<'PY'
import sys
setup, window, round_, delivered, out = sys.argv[1:6]
loads = [dict(part.split("=", 1) for part in line.split() if "=" in part)
         for line in out.split("|") if line.strip()]
for fields in loads:
    if fields.get("acked_ok") != fields.get("sent"):
        sys.exit(f"{setup} window {window}: not every message was acknowledged: {out}")
# The loads ran at once: all their messages over the longest of them.
rate = sum(int(f["sent"]) for f in loads) / max(float(f["secs"]) for f in loads)
p99 = max(float(f["p99_ms"]) for f in loads)
print("\t".join([setup, window, round_, f"{rate:.0f}", f"{p99}", delivered]))
PY
  tail -1 "$RESULTS" | awk -F'\t' '{printf "%-8s window %s round %s: ACK %s msg/s, p99 %s ms, delivered %s msg/s\n", $1, $2, $3, $4, $5, $6}'
}

for round in $(seq 1 "$ROUNDS"); do
  for window in 1 8; do
    for setup in $SETUPS; do
      run "$setup" "$window" "$round"
    done
  done
done

python3 - "$RESULTS" "$MESSAGES" "$BACKEND" <<'PY'
import statistics, sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
def median(setup, window, column):
    values = [float(r[column]) for r in rows if r[0] == setup and r[1] == window and r[column] != "-"]
    return statistics.median(values)
rounds = len([r for r in rows if r[0] == "defaults" and r[1] == "1"])
print(f"\n{sys.argv[2]} ADT^A04 per run, medians of {rounds} rounds:")
for window in ("1", "8"):
    defaults = median("defaults", window, 3)
    delivered = median("defaults", window, 5)
    if sys.argv[3] == "sqlite":
        journal = median("journal", window, 3)
        print(f"window {window}: journal only {journal:.0f} msg/s (p99 {median('journal', window, 4):.1f} ms); "
              f"embedded defaults {defaults:.0f} msg/s (p99 {median('defaults', window, 4):.1f} ms), "
              f"delivered to local {delivered:.0f} msg/s")
        print(f"  ACK rate on defaults / journal only: {defaults / journal:.2f} (aim >= 0.70); "
              f"delivered to local / journal only: {delivered / journal:.2f} (aim >= 0.30)")
    else:
        one, two = median("pg1", window, 5), median("pg2", window, 5)
        print(f"window {window}: delivered to local: SQLite {delivered:.0f} msg/s; PostgreSQL, one instance "
              f"{one:.0f} msg/s (ACK {median('pg1', window, 3):.0f} msg/s, p99 {median('pg1', window, 4):.1f} ms), "
              f"two instances {two:.0f} msg/s (ACK {median('pg2', window, 3):.0f} msg/s, p99 {median('pg2', window, 4):.1f} ms)")
        print(f"  one instance / SQLite: {one / delivered:.2f} (aim >= 1.00); "
              f"two instances / one: {two / one:.2f} (aim >= 1.60)")
PY
