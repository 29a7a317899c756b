#!/usr/bin/env bash
# Regenerates alipay/testdata/openssl/: notification vectors signed with the openssl command line,
# independently of the code under test. Python only builds the canonical strings (sorted k=v, V1
# rule: no sign, no sign_type) and percent-encodes bodies; every signature comes from
# `openssl dgst -sha256|-sha1 -sign KEY`.
#
# Keys: ../shared/test_private_pkcs8.pem (the published TESTING KEY pair; verify with
# shared/test_public.pem) signs the valid vectors; openssl/other_private.pem (made once with
# `openssl genrsa 2048`, TESTING KEY) is the "wrong key". The resulting files are committed; rerunning
# rewrites them byte for byte except other_*.pem, which are kept when present.
#
# Usage: cd alipay/testdata && ./gen_vectors.sh
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p openssl
[ -f openssl/other_private.pem ] || openssl genrsa -out openssl/other_private.pem 2048
[ -f openssl/other_public.pem ] || openssl rsa -in openssl/other_private.pem -pubout -out openssl/other_public.pem

python3 - <<'PY'
import base64, json, subprocess, urllib.parse

KEY = "shared/test_private_pkcs8.pem"
OTHER = "openssl/other_private.pem"

def sign(msg: bytes, algo: str, key: str) -> str:
    out = subprocess.run(["openssl", "dgst", "-" + algo, "-sign", key], input=msg,
                         capture_output=True, check=True).stdout
    return base64.b64encode(out).decode()

def canonical_v1(fields, cs):
    kv = sorted((k, v) for k, v in fields if k not in ("sign", "sign_type") and v.strip() != "")
    return b"&".join(k.encode(cs) + b"=" + v.encode(cs) for k, v in kv)

def body(fields, cs):
    return "&".join(urllib.parse.quote_plus(k.encode(cs)) + "=" + urllib.parse.quote_plus(v.encode(cs))
                    for k, v in fields)

def base(**over):
    f = {
        "gmt_create": "2024-05-20 13:14:00", "charset": "utf-8", "seller_email": "shop@example.com",
        "subject": "年度会员 Annual plan", "body": "会员一年", "buyer_id": "2088102000000001",
        "invoice_amount": "199.00", "notify_id": "2024052000222131415000000000000001",
        "fund_bill_list": '[{"amount":"199.00","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS", "receipt_amount": "199.00",
        "buyer_pay_amount": "199.00", "sign_type": "RSA2", "app_id": "2014072300007148",
        "seller_id": "2088101000000002", "gmt_payment": "2024-05-20 13:14:15",
        "notify_time": "2024-05-20 13:14:16", "version": "1.0", "out_trade_no": "20240520000001",
        "total_amount": "199.00", "trade_no": "2024052022001400000000000001",
        "auth_app_id": "2014072300007148", "buyer_logon_id": "abc***@example.com", "point_amount": "0.00",
    }
    for k, v in over.items():
        if v is None:
            f.pop(k, None)
        else:
            f[k] = v
    return f

vectors = []

def add(name, how, fields, expect, cs="utf-8", algo="sha256", key=KEY, configured="RSA2",
        signed_fields=None, mutate=None, decoded=None):
    items = list(fields.items())
    sf = list((signed_fields or fields).items())
    sig = sign(canonical_v1(sf, cs), algo, key)
    items.insert(3, ("sign", sig))
    b = body(items, cs)
    if mutate:
        b = mutate(b, sig)
    vectors.append({"name": name, "how": how, "sign_type_configured": configured,
                    "verify_key": "shared/test_public.pem", "body": b, "expect": expect,
                    "decoded": decoded or {}})

add("utf8_25_fields", "25-field TRADE_SUCCESS, UTF-8, RSA2 over the V1 canonical string", base(), "valid",
    decoded={"total_amount": 19900, "subject": "年度会员 Annual plan", "out_trade_no": "20240520000001"})
add("gbk", "charset=gbk: subject and body encoded as GBK bytes, signed over the GBK canonical bytes",
    base(charset="gbk", subject="中文标题 GBK", body="商品描述"), "valid", cs="gbk",
    decoded={"subject": "中文标题 GBK", "body": "商品描述"})
ent = '[{&quot;amount&quot;:&quot;199.00&quot;,&quot;fundChannel&quot;:&quot;ALIPAYACCOUNT&quot;}]'
add("html_entities_signed", "fund_bill_list carries literal HTML entities (&quot;) and they are signed as such: valid only if never unescaped",
    base(fund_bill_list=ent, subject="Tom &amp; Jerry"), "valid", decoded={"fund_bill_list": ent, "subject": "Tom &amp; Jerry"})
add("html_entities_by_sanitizer", "signed over the real JSON, but the body carries it HTML-escaped (what htmlspecialchars does): invalid",
    base(fund_bill_list=ent), "signature_invalid", signed_fields=base())
add("special_chars", "values with + % & = and spaces, and a pre-encoded passback_params",
    base(subject="A+B 100% & C=D", body="x=1&y=2;z", passback_params="order%3D1%26from%3Dapp"), "valid",
    decoded={"subject": "A+B 100% & C=D", "body": "x=1&y=2;z", "passback_params": "order%3D1%26from%3Dapp"})
add("utf8_4byte", "4-byte UTF-8 (emoji, CJK extension B) in subject and body",
    base(subject="😀 𠮷野家 套餐", body="🧧红包"), "valid", decoded={"subject": "😀 𠮷野家 套餐"})
add("rsa_sha1", "sign_type=RSA, SHA1withRSA signature, verifier configured RSA: valid",
    base(sign_type="RSA"), "valid", algo="sha1", configured="RSA")
add("rsa_sha1_under_rsa2", "the same SHA1withRSA signature, verifier configured RSA2: invalid",
    base(sign_type="RSA"), "signature_invalid", algo="sha1")
add("sha1_declared_rsa2", "sign_type=RSA2 but signed with SHA1withRSA: invalid",
    base(), "signature_invalid", algo="sha1")
add("refund_partial", "partial refund: TRADE_SUCCESS with refund_fee, gmt_refund (ms), out_biz_no",
    base(refund_fee="50.00", gmt_refund="2024-05-21 09:00:00.5", out_biz_no="RF20240521001",
         notify_id="2024052100222090000000000000000002", notify_time="2024-05-21 09:00:01"), "valid",
    decoded={"refund_fee": 5000, "out_biz_no": "RF20240521001"})
add("closed_timeout", "TRADE_CLOSED after a timeout: gmt_close, no refund fields, no payment",
    base(trade_status="TRADE_CLOSED", gmt_close="2024-05-20 15:14:00", gmt_payment=None, fund_bill_list=None,
         receipt_amount=None, buyer_pay_amount=None, invoice_amount=None, point_amount=None), "valid",
    decoded={"trade_status": "TRADE_CLOSED"})
add("wrong_key", "signed with openssl/other_private.pem, verified with the test key: invalid",
    base(), "signature_invalid", key=OTHER)
add("tampered_field", "total_amount changed after signing (199.00 → 1.00): invalid",
    base(), "signature_invalid", mutate=lambda b, s: b.replace("total_amount=199.00", "total_amount=1.00"))
add("extra_param", "an unsigned parameter appended (&id=123, like a query on notify_url): invalid",
    base(), "signature_invalid", mutate=lambda b, s: b + "&id=123")
add("duplicate_key", "total_amount sent twice: rejected before verification",
    base(), "duplicate_key", mutate=lambda b, s: b + "&total_amount=199.00")
add("missing_sign", "sign removed: invalid",
    base(), "signature_invalid", mutate=lambda b, s: b.replace("sign=" + urllib.parse.quote_plus(s) + "&", ""))
add("garbage_sign", "sign replaced by non-base64 text: invalid",
    base(), "signature_invalid", mutate=lambda b, s: b.replace(urllib.parse.quote_plus(s), "not%21base64%3F"))
add("truncated_sign", "sign cut to its first 200 base64 characters: invalid",
    base(), "signature_invalid", mutate=lambda b, s: b.replace(urllib.parse.quote_plus(s), urllib.parse.quote_plus(s[:200])))
add("bad_escape", "a truncated %-escape in a value: malformed",
    base(), "malformed", mutate=lambda b, s: b + "&x=%E4%B")

with open("openssl/vectors.json", "w") as f:
    json.dump(vectors, f, ensure_ascii=False, indent=1)
    f.write("\n")
# Sample bodies for the CLI and the docs.
for v in vectors:
    if v["name"] in ("utf8_25_fields", "gbk", "tampered_field"):
        with open("openssl/notify_" + v["name"] + ".txt", "w") as f:
            f.write(v["body"] + "\n")
PY
echo "wrote openssl/vectors.json"
