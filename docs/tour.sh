#!/usr/bin/env bash
# docs/tour.md, step by step: run from the repository root. It checks each answer and exits non-zero
# when the tour is no longer true. It leaves ./tour behind (delete it after). TOUR_PORT picks the
# loopback port (default 8090, as on the page).
set -euo pipefail
PORT=${TOUR_PORT:-8090}
BASE=http://127.0.0.1:$PORT
if curl -s -o /dev/null "$BASE/"; then
  echo "tour: something already answers on 127.0.0.1:$PORT; set TOUR_PORT to a free port" >&2
  exit 1
fi
rm -rf tour
mkdir -p tour/keys
go build -o tour/paynotify ./cmd/paynotify
PN=$PWD/tour/paynotify
$PN keygen --out tour/keys >/dev/null
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out tour/keys/alipay_standin_private.pem 2>/dev/null
openssl pkey -in tour/keys/alipay_standin_private.pem -pubout -out tour/keys/alipay_public.pem

cat > tour/paynotify.yaml <<'YAML'
listen: "127.0.0.1:TOUR_PORT"
database: "sqlite:data/paynotify.db"
public_url: "https://pay.example.com"
api_token: "${PAYNOTIFY_API_TOKEN}"
apps:
  - name: shop
    provider: alipay
    app_id: "2021000000000001"
    seller_id: "2088000000000002"
    app_private_key_file: keys/app_private_key.pem
    alipay_public_key_file: keys/alipay_public.pem
YAML
sed -i "s/TOUR_PORT/$PORT/" tour/paynotify.yaml
export PAYNOTIFY_API_TOKEN=$(openssl rand -hex 16)   # a token of your own, never a published one
(cd tour && exec $PN serve --config paynotify.yaml 2>server.log) &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
up=
for _ in $(seq 1 100); do curl -sf $BASE/healthz >/dev/null && up=1 && break; sleep 0.1; done
[[ -n $up ]] || { echo "tour: the server did not come up on $BASE; tour/server.log:" >&2; cat tour/server.log >&2; exit 1; }

created=$(curl -s -H "Authorization: Bearer $PAYNOTIFY_API_TOKEN" -X POST $BASE/v1/orders \
  -d '{"app":"shop","out_trade_no":"TOUR0001","amount":8888,"subject":"Coffee","channel":"alipay.app"}')
grep -q '"order_string"' <<<"$created" || { echo "tour: create: $created"; exit 1; }

CANON='app_id=2021000000000001&charset=utf-8&gmt_payment=2026-11-29 10:00:00&notify_id=tour-0001&notify_time=2026-11-29 10:00:05&notify_type=trade_status_sync&out_trade_no=TOUR0001&seller_id=2088000000000002&total_amount=88.88&trade_no=2026112922001400000000000001&trade_status=TRADE_SUCCESS&version=1.0'
SIGN=$(printf '%s' "$CANON" | openssl dgst -sha256 -sign tour/keys/alipay_standin_private.pem | openssl base64 -A)
ARGS=(); IFS='&' read -ra FIELDS <<< "$CANON"
for f in "${FIELDS[@]}"; do ARGS+=(--data-urlencode "$f"); done
for i in 1 2; do
  answer=$(curl -s -X POST $BASE/notify/alipay/shop \
    -H 'Content-Type: application/x-www-form-urlencoded; text/html; charset=utf-8' \
    "${ARGS[@]}" --data-urlencode "sign=$SIGN" --data-urlencode "sign_type=RSA2")
  [ "$answer" = success ] || { echo "tour: notification $i answered: $answer"; exit 1; }
done

order=$(curl -s -H "Authorization: Bearer $PAYNOTIFY_API_TOKEN" $BASE/v1/orders/shop/TOUR0001)
grep -q '"status":"paid"' <<<"$order" && grep -q '"version":2' <<<"$order" || { echo "tour: order: $order"; exit 1; }
events=$(curl -s -H "Authorization: Bearer $PAYNOTIFY_API_TOKEN" $BASE/v1/events)
[ "$(grep -o '"type":"order.paid"' <<<"$events" | wc -l)" = 1 ] || { echo "tour: events: $events"; exit 1; }

# Tampered: the amount changed without re-signing.
answer=$(curl -s -X POST $BASE/notify/alipay/shop \
  -H 'Content-Type: application/x-www-form-urlencoded; text/html; charset=utf-8' \
  "${ARGS[@]/total_amount=88.88/total_amount=0.01}" --data-urlencode "sign=$SIGN" --data-urlencode "sign_type=RSA2")
[ "$answer" = fail ] || { echo "tour: tampered notification answered: $answer"; exit 1; }
evidence=$(curl -s -H "Authorization: Bearer $PAYNOTIFY_API_TOKEN" "$BASE/v1/notifications?out_trade_no=TOUR0001&verdict=rejected")
grep -q '"reason":"signature_invalid"' <<<"$evidence" || { echo "tour: evidence: $evidence"; exit 1; }
echo "tour: ok"
