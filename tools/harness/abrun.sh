#!/usr/bin/env bash
# Two builds of paynotify side by side on the baseline harness's SQLite stack: each run starts
# one build's `serve` on a fresh copy of the harness's seeded database, pays D000001 once, runs
# wrk in one mode for DUR seconds and prints req/s, p99 and the server's CPU per second; the
# builds alternate, ROUNDS times (docs/performance.md: alternated runs on one machine are how a
# change is compared, single runs move by ±30 %).
#
#   go build -o /tmp/pn-a ./cmd/paynotify    # at the commit before
#   go build -o /tmp/pn-b ./cmd/paynotify    # at the change
#   BASE=/tmp/bench ./tools/harness/abrun.sh /tmp/pn-a /tmp/pn-b
#
# BASE is a copy of the baseline harness on which setup.sh already ran with PN_SRC set (its
# data/pn_template.db must be at a schema both builds take: the newer one migrates it).
# Env: MODE=dup (or first) CONC=32 DUR=10 ROUNDS=2. Loopback only.
set -euo pipefail
B=${BASE:?set BASE to the harness folder}
MODE=${MODE:-dup}
CONC=${CONC:-32}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-2}
[[ $# -ge 1 ]] || { echo "usage: BASE=… $0 BUILD [BUILD…]" >&2; exit 2; }
cd "$B"
URL=http://127.0.0.1:8083/notify/alipay/shop

one() { # build
  rm -f db/pn.db db/pn.db-wal db/pn.db-shm
  cp data/pn_template.db db/pn.db
  "$1" serve --config run/pn.yaml > run/pn.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 200); do curl -s -o /dev/null http://127.0.0.1:8083/healthz && break; sleep 0.05; done
  curl -s -o /dev/null -H 'Content-Type: application/x-www-form-urlencoded; charset=utf-8' --data-binary "$(cat data/dup.txt)" "$URL"
  local t0 t1
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  wrk -t2 -c"$CONC" -d"${DUR}s" --timeout 10s -s lua/notify.lua "$URL" -- "$MODE" /notify/alipay/shop "$B/data" > run/abrun.wrk 2>&1
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local r; r=$(grep '^RESULT' run/abrun.wrk)
  val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $r"; }
  local hz; hz=$(getconf CLK_TCK)
  printf '%s %s c%s: rps=%s p99_ms=%s fail=%s server_cpu_cores=%s\n' "$1" "$MODE" "$CONC" "$(val rps)" "$(val p99_ms)" \
    "$(val fail)" "$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v d="$DUR" 'BEGIN{printf "%.2f", (b-a)/hz/d}')"
}

for _ in $(seq 1 "$ROUNDS"); do
  for build in "$@"; do one "$build"; done
done
