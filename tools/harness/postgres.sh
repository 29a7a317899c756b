#!/usr/bin/env bash
# The baseline harness's paynotify stack on PostgreSQL, beside the harness's naive Go handler on
# SQLite, in one run (docs/performance.md, "Notifications against the baseline harness").
#
#   BASE=/tmp/bench ./tools/harness/postgres.sh
#
# BASE is a copy of the baseline harness on which setup.sh already ran with PN_SRC set (it holds
# bin/paynotify, bin/notifysrv, the keys, the 200,000 signed bodies and the naive stack's
# template database). Each mode runs on a fresh database holding the same 200,001 pending orders
# as the harness seeds into SQLite: PG_URL (default the local server) gets a database
# paynotify_harness, dropped and created again per mode. Loopback only.
# Env: DUR=15 CONC=64 DUPCONC=32 PG_URL=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
set -euo pipefail
B=${BASE:?set BASE to the harness folder}
DUR=${DUR:-15}
CONC=${CONC:-64}
DUPCONC=${DUPCONC:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
DB=paynotify_harness
DB_URL=${PG_URL/\/postgres\?//$DB?}
N=200000
cd "$B"
mkdir -p run db

PID=
stop() { if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; PID=; }
trap stop EXIT

wait_http() {
  for _ in $(seq 1 600); do curl -s -o /dev/null "$1" && return 0; sleep 0.05; done
  echo "server at $1 did not come up" >&2; return 1
}

fresh_db() {
  psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  bin/paynotify migrate --database "$DB_URL" >/dev/null
  psql -q "$DB_URL" <<SQL
INSERT INTO orders (app, out_trade_no, channel, status, amount, currency, subject, version, created_at, expires_at)
SELECT 'shop', 'O' || lpad(i::text, 6, '0'), 'alipay.app', 'pending', 8888, 'CNY', '年度会员-黄金套餐', 1,
       '2026-01-01T00:00:00Z', '2030-01-01T00:00:00Z' FROM generate_series(1, $N) AS i;
INSERT INTO orders (app, out_trade_no, channel, status, amount, currency, subject, version, created_at, expires_at)
VALUES ('shop', 'D000001', 'alipay.app', 'pending', 8888, 'CNY', '年度会员-黄金套餐', 1, '2026-01-01T00:00:00Z', '2030-01-01T00:00:00Z');
VACUUM ANALYZE orders;
SQL
}

q() { psql -qtAX "$DB_URL" -c "$1"; }

run_wrk() { # url path mode conc -> RESULT line
  wrk -t2 -c"$4" -d"${DUR}s" --timeout 10s --latency -s lua/notify.lua "$1" -- "$3" "$2" "$B/data" | grep '^RESULT'
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12+$13}'; }

echo "== naive Go handler on SQLite, first deliveries c$CONC"
rm -f db/go.db db/go.db-wal db/go.db-shm; cp data/template.db db/go.db
bin/notifysrv -addr 127.0.0.1:8082 -db db/go.db -pubkey data/alipay_public_oneline.txt > run/go-pg-harness.log 2>&1 &
PID=$!
wait_http http://127.0.0.1:8082/stats
run_wrk http://127.0.0.1:8082/notify /notify first "$CONC"
stop

sed -e 's#^listen:.*#listen: "127.0.0.1:8084"#' -e "s#^database:.*#database: \"$DB_URL\"#" \
  -e 's#^public_url:.*#public_url: "http://127.0.0.1:8084"#' run/pn.yaml > run/pn-pg.yaml
for mode in first dup; do
  conc=$CONC; [[ $mode == dup ]] && conc=$DUPCONC
  echo "== paynotify on PostgreSQL, $mode c$conc"
  fresh_db
  bin/paynotify serve --config run/pn-pg.yaml > run/pn-pg.log 2>&1 &
  PID=$!
  wait_http http://127.0.0.1:8084/healthz
  HZ=$(getconf CLK_TCK); t0=$(cpu_ticks "$PID")
  res=$(run_wrk http://127.0.0.1:8084/notify/alipay/shop /notify/alipay/shop "$mode" "$conc")
  t1=$(cpu_ticks "$PID")
  sleep 2
  stop
  echo "$res"
  dur=$(sed -n 's/.* duration_s=\([^ ]*\).*/\1/p' <<<"$res")
  echo "server CPU cores: $(awk -v a="$t0" -v b="$t1" -v hz="$HZ" -v d="$dur" 'BEGIN{printf "%.2f", (b-a)/hz/d}') (paynotify only; PostgreSQL's own processes not counted)"
  paid=$(q "SELECT count(*) FROM orders WHERE status = 'paid' AND out_trade_no LIKE 'O%'")
  ok=$(q "SELECT count(*) FROM evidence WHERE answer = 'success' AND out_trade_no LIKE 'O%'")
  paidEv=$(q "SELECT count(*) FROM events WHERE type = 'order.paid' AND out_trade_no LIKE 'O%'")
  dupPaid=$(q "SELECT count(*) FROM events WHERE type = 'order.paid' AND out_trade_no = 'D000001'")
  if [[ $mode == first ]]; then
    [[ $paid == "$ok" && $paid == "$paidEv" ]] && v=exact || v=MISMATCH
    echo "check: paid orders=$paid, server-side success=$ok, order.paid events=$paidEv -> $v"
  else
    [[ $dupPaid == 1 && $paid == 0 ]] && v=OK || v=MISMATCH
    echo "check: D000001 order.paid events=$dupPaid (want 1), O orders paid=$paid (want 0) -> $v"
  fi
done
psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
