#!/usr/bin/env python3
"""Independent generator of wechatpay/testdata/own_vectors.json.

It uses only the Python standard library and the `openssl` command line, never the Go package
under test:

  * RSA SHA256withRSA signatures: `openssl dgst -sha256 -sign KEY` (PKCS#1 v1.5 is deterministic,
    so re-running reproduces every signature byte for byte).
  * AEAD_AES_256_GCM: built here from its definition (NIST SP 800-38D): the AES blocks come from
    `openssl enc -aes-256-ecb -nopad` (hash subkey H = E(K, 0^128) and E(K, J0)) and
    `openssl enc -aes-256-ctr` (the keystream from inc32(J0)), GHASH is computed in Python over
    GF(2^128). `openssl enc` refuses AEAD modes, hence the construction. The result is checked
    against the shared vector V3 and, when the `cryptography` module is installed, against
    AESGCM for every vector.
  * APIv2: hashlib.md5 / hmac-sha256 over the sorted key=value string; req_info with
    `openssl enc -aes-256-ecb` (PKCS#7 padding) under the ASCII hex of md5(key).

Keys: the "WeChat Pay platform" signer is the wechatpay-go test key (../shared/
go_sdk_test_private_key.pem, certificate serial D7CE59D1F522D701, public key
../shared/go_sdk_test_public_key.pem); the merchant key is the official doc test key
(../shared/official_doc_test_key.pem); other_key.pem is a throw-away RSA-2048 key made once with
`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` ("a wrong key"); platform_cert.pem is
a self-signed certificate for other_key.pem with serial 5A5A0123456789ABCDEF5A5A0123456789ABCDEF made
once with `openssl req -x509` (see make_keys()), used by the certificate-download test.

Run from this directory: python3 gen_vectors.py  (writes ../own_vectors.json)
"""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TD = os.path.dirname(HERE)
SHARED = os.path.join(TD, "shared")
PLATFORM_KEY = os.path.join(SHARED, "go_sdk_test_private_key.pem")
MERCHANT_KEY = os.path.join(SHARED, "official_doc_test_key.pem")
OTHER_KEY = os.path.join(TD, "other_key.pem")
PLATFORM_CERT = os.path.join(TD, "platform_cert.pem")

APIV3_KEY = b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb"
OTHER_APIV3_KEY = b"ZYXWVUTSRQPONMLKJIHGFEDCBA987654"
APIV2_KEY = "192006250b4c09247ec02edce69f6a2d"
CERT_SERIAL = "D7CE59D1F522D701"
PUB_KEY_ID = "PUB_KEY_ID_0119000001002024060100000000000001"


def openssl(*args, data=b""):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def make_keys():
    if not os.path.exists(OTHER_KEY):
        pem = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048").decode()
        with open(OTHER_KEY, "w") as f:
            f.write(pem.replace("PRIVATE KEY", "TESTING KEY"))
    if not os.path.exists(PLATFORM_CERT):
        pem = open(OTHER_KEY).read().replace("TESTING KEY", "PRIVATE KEY")
        with tempfile.NamedTemporaryFile("w") as k:
            k.write(pem)
            k.flush()
            openssl("req", "-x509", "-new", "-key", k.name, "-sha256", "-days", "3650",
                "-subj", "/C=CN/O=paynotify test platform/CN=paynotify test platform certificate",
                    "-set_serial", "0x5A5A0123456789ABCDEF5A5A0123456789ABCDEF", "-out", PLATFORM_CERT)


def sign(key, message: bytes) -> str:
    # Test keys are stored with the label "TESTING KEY" (so scanners do not flag them); openssl
    # wants "PRIVATE KEY".
    pem = open(key).read().replace("TESTING KEY", "PRIVATE KEY")
    with tempfile.NamedTemporaryFile("w") as k, tempfile.NamedTemporaryFile() as f:
        k.write(pem)
        k.flush()
        f.write(message)
        f.flush()
        sig = openssl("dgst", "-sha256", "-sign", k.name, f.name)
    return base64.b64encode(sig).decode()


# ---- AES-GCM from its definition ----

def aes_ecb_block(key: bytes, block: bytes) -> bytes:
    return openssl("enc", "-aes-256-ecb", "-nopad", "-K", key.hex(), data=block)


def aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    if not data:
        return b""
    return openssl("enc", "-aes-256-ctr", "-K", key.hex(), "-iv", iv.hex(), data=data)


R = 0xE1 << 120


def gmul(x: int, y: int) -> int:
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ R if v & 1 else v >> 1
    return z


def ghash(h: int, aad: bytes, ct: bytes) -> int:
    def blocks(b):
        b = b + b"\0" * ((16 - len(b) % 16) % 16)
        return [int.from_bytes(b[i:i + 16], "big") for i in range(0, len(b), 16)]
    x = 0
    for blk in blocks(aad) + blocks(ct):
        x = gmul(x ^ blk, h)
    lens = ((len(aad) * 8) << 64) | (len(ct) * 8)
    return gmul(x ^ lens, h)


def gcm_encrypt(key: bytes, nonce: bytes, aad: bytes, pt: bytes) -> bytes:
    assert len(key) == 32 and len(nonce) == 12
    h = int.from_bytes(aes_ecb_block(key, b"\0" * 16), "big")
    j0 = nonce + b"\0\0\0\1"
    ctr1 = nonce + b"\0\0\0\2"
    ct = aes_ctr(key, ctr1, pt)
    s = ghash(h, aad, ct)
    tag = (int.from_bytes(aes_ecb_block(key, j0), "big") ^ s).to_bytes(16, "big")
    out = ct + tag
    try:  # cross-check when available; never required
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        assert AESGCM(key).encrypt(nonce, pt, aad) == out, "GCM construction disagrees with cryptography"
    except ImportError:
        pass
    return out


def gcm_b64(key, nonce, aad, pt):
    return base64.b64encode(gcm_encrypt(key, nonce.encode(), aad.encode(), pt.encode())).decode()


# ---- notifications ----

def envelope(event_id, create_time, event_type, summary, original_type, ciphertext, aad, nonce):
    # Compact, field order as WeChat Pay sends it; non-ASCII written raw (UTF-8).
    return json.dumps({
        "id": event_id, "create_time": create_time, "resource_type": "encrypt-resource",
        "event_type": event_type, "summary": summary,
        "resource": {"original_type": original_type, "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": ciphertext, "associated_data": aad, "nonce": nonce}},
        ensure_ascii=False, separators=(",", ":"))


def notification(name, body, ts, nonce, serial, key=PLATFORM_KEY, signature=None, now=None, expect="valid", note=""):
    msg = f"{ts}\n{nonce}\n{body}\n".encode()
    sig = signature if signature is not None else sign(key, msg)
    return {"name": name, "note": note, "now": now if now is not None else ts, "expect": expect,
            "headers": {"Wechatpay-Timestamp": str(ts), "Wechatpay-Nonce": nonce, "Wechatpay-Signature": sig,
                        "Wechatpay-Serial": serial, "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"},
            "body": body}


PAY_PLAIN = json.dumps({
    "mchid": "1900000100", "appid": "wxd678efh567hg6787", "out_trade_no": "PN20261101000001",
    "transaction_id": "4200002000202611010000000001", "trade_type": "JSAPI", "trade_state": "SUCCESS",
    "trade_state_desc": "支付成功", "bank_type": "ICBC_DEBIT", "attach": "", "success_time": "2026-11-01T09:30:00+08:00",
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "amount": {"total": 2599, "payer_total": 2499, "currency": "CNY", "payer_currency": "CNY"},
    "promotion_detail": [{"coupon_id": "109519", "amount": 100, "type": "CASH", "scope": "GLOBAL"}]},
    ensure_ascii=False, separators=(",", ":"))


def refund_plain(status, refund, success_time):
    d = {"mchid": "1900000100", "out_trade_no": "PN20261101000001", "transaction_id": "4200002000202611010000000001",
         "out_refund_no": "RF%s" % status, "refund_id": "50300000002026110100000000" + str(refund)[:3].zfill(3),
         "refund_status": status}
    if success_time:
        d["success_time"] = success_time
    d["user_received_account"] = "支付用户零钱"
    d["amount"] = {"total": 2599, "refund": refund, "payer_total": 2499, "payer_refund": min(refund, 2499)}
    return json.dumps(d, ensure_ascii=False, separators=(",", ":"))


def main():
    make_keys()
    out = {"_source": "generated by testdata/gen/gen_vectors.py with python3 stdlib + openssl CLI; see its docstring"}

    # GCM self-check against the shared vector V3 (empty associated data).
    assert gcm_b64(APIV3_KEY, "abcdefghijkl", "", '{"a":1}') == "0x3YVCEW6X+plQ5V30N6Hy+57LVFhMs="

    ts = 1793500200  # 2026-11-01T09:30:00+08:00
    rnonce = "k3Jd8sLq0PzX"
    ct = gcm_b64(APIV3_KEY, rnonce, "transaction", PAY_PLAIN)
    body = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa25", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                    "支付成功", "transaction", ct, "transaction", rnonce)
    hn = "ukDaEPvYjkM5choqNcYJwAjiC64BonHH"
    notes = []
    notes.append(notification("pay_ok_cert", body, ts, hn, CERT_SERIAL, note="TRANSACTION.SUCCESS, certificate serial"))
    notes.append(notification("pay_ok_pubkey", body, ts, hn, PUB_KEY_ID, note="same, public-key id"))
    notes.append(notification("pay_4min_old", body, ts, hn, CERT_SERIAL, now=ts + 240, note="timestamp 4 minutes old: valid"))
    notes.append(notification("pay_299s_future", body, ts, hn, CERT_SERIAL, now=ts - 299, note="timestamp 299 s ahead: valid"))
    notes.append(notification("pay_stale_300s", body, ts, hn, CERT_SERIAL, now=ts + 300, expect="timestamp_skew", note="exactly 5 minutes old: rejected"))
    notes.append(notification("pay_stale_1h", body, ts, hn, CERT_SERIAL, now=ts + 3600, expect="timestamp_skew", note="an hour old"))
    notes.append(notification("pay_future_300s", body, ts, hn, CERT_SERIAL, now=ts - 300, expect="timestamp_skew", note="5 minutes in the future"))
    notes.append(notification("pay_wrong_key", body, ts, hn, CERT_SERIAL, key=OTHER_KEY, expect="signature_invalid", note="signed by another RSA key"))
    notes.append(notification("pay_merchant_key", body, ts, hn, CERT_SERIAL, key=MERCHANT_KEY, expect="signature_invalid", note="signed with the merchant key instead of the platform key"))
    probe = "WECHATPAY/SIGNTEST/" + base64.b64encode(hashlib.sha256(b"probe").digest() * 8).decode()
    notes.append(notification("pay_probe", body, ts, hn, CERT_SERIAL, signature=probe, expect="probe", note="WECHATPAY/SIGNTEST/ probe"))
    good = notification("x", body, ts, hn, CERT_SERIAL)["headers"]["Wechatpay-Signature"]
    tampered = body.replace('"summary":"支付成功"', '"summary":"支付成功 "')
    assert tampered != body
    notes.append(notification("pay_tampered_body", tampered, ts, hn, CERT_SERIAL, signature=good, expect="signature_invalid", note="one byte added to the signed body"))
    reser = json.dumps(json.loads(body), ensure_ascii=True, separators=(", ", ": "))
    notes.append(notification("pay_reserialized", reser, ts, hn, CERT_SERIAL, signature=good, expect="signature_invalid", note="the same JSON re-serialised (spaces, \\u escapes): raw bytes are signed"))
    reser2 = json.dumps(json.loads(body), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    notes.append(notification("pay_reserialized_sorted", reser2, ts, hn, CERT_SERIAL, signature=good, expect="signature_invalid", note="the same JSON with sorted keys"))
    notes.append(notification("pay_crlf_body", body + "\r\n", ts, hn, CERT_SERIAL, signature=good, expect="signature_invalid", note="a trailing CRLF added by a proxy"))
    notes.append(notification("pay_unknown_serial", body, ts, hn, "6B1A2C3D4E5F60718293A4B5C6D7E8F901234567", expect="unknown_serial", note="correctly signed, unknown certificate serial"))
    notes.append(notification("pay_unknown_pubkey_id", body, ts, hn, "PUB_KEY_ID_0119000001002024060100000000000002", expect="unknown_serial", note="correctly signed, unknown public key id"))
    ct_other = gcm_b64(OTHER_APIV3_KEY, rnonce, "transaction", PAY_PLAIN)
    body_other = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa26", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                          "支付成功", "transaction", ct_other, "transaction", rnonce)
    notes.append(notification("pay_other_apiv3_key", body_other, ts, hn, CERT_SERIAL, expect="decrypt_failed", note="resource encrypted under another APIv3 key, correctly signed"))
    raw = bytearray(base64.b64decode(ct))
    raw[-1] ^= 0x01
    body_tag = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa27", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                        "支付成功", "transaction", base64.b64encode(bytes(raw)).decode(), "transaction", rnonce)
    notes.append(notification("pay_altered_tag", body_tag, ts, hn, CERT_SERIAL, expect="decrypt_failed", note="last GCM tag bit flipped, then signed"))
    body_aad = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa28", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                        "支付成功", "transaction", ct, "refund", rnonce)
    notes.append(notification("pay_wrong_aad", body_aad, ts, hn, CERT_SERIAL, expect="decrypt_failed", note="associated_data changed to refund"))
    body_nonce = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa29", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                          "支付成功", "transaction", ct, "transaction", "k3Jd8sLq0Pz")
    notes.append(notification("pay_short_nonce", body_nonce, ts, hn, CERT_SERIAL, expect="decrypt_failed", note="11-byte resource nonce (Go's GCM would panic)"))
    ct_empty = gcm_b64(APIV3_KEY, rnonce, "", PAY_PLAIN)
    body_empty = envelope("7b2b145f-9cda-5573-8be2-d2d9eaaffa30", "2026-11-01T09:30:01+08:00", "TRANSACTION.SUCCESS",
                          "支付成功", "transaction", ct_empty, "", rnonce)
    notes.append(notification("pay_empty_aad", body_empty, ts, hn, PUB_KEY_ID, note="empty associated_data"))

    rts = ts + 86400
    for status, ev, summary, amount, st in [("SUCCESS", "REFUND.SUCCESS", "退款成功", 1000, "2026-11-02T09:30:00+08:00"),
                                            ("ABNORMAL", "REFUND.ABNORMAL", "退款异常", 599, ""),
                                            ("CLOSED", "REFUND.CLOSED", "退款关闭", 1, "")]:
        rn = "Rf" + status[:3] + "0123456"
        rn = rn[:12]
        ctr = gcm_b64(APIV3_KEY, rn, "refund", refund_plain(status, amount, st))
        rb = envelope("EV-2026110209300000" + status[:2], "2026-11-02T09:30:01+08:00", ev, summary, "refund", ctr, "refund", rn)
        notes.append(notification("refund_" + status.lower(), rb, rts, "Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc", PUB_KEY_ID,
                                  note=ev + " in public-key mode; amount.refund is this refund's own amount"))
    out["apiv3_key"] = APIV3_KEY.decode()
    out["other_apiv3_key"] = OTHER_APIV3_KEY.decode()
    out["cert_serial"] = CERT_SERIAL
    out["pub_key_id"] = PUB_KEY_ID
    out["pay_plaintext"] = PAY_PLAIN
    out["notifications"] = notes

    # ---- merchant request signatures (merchant key) ----
    reqs = []
    for method, uri, body_s in [
        ("POST", "/v3/pay/transactions/native", '{"appid":"wxd678efh567hg6787","mchid":"1900007291","description":"测试商品","out_trade_no":"PN20261101000001","time_expire":"2026-11-01T11:30:00+08:00","notify_url":"https://pay.example.com/notify/wechatpay/wx","amount":{"total":2599,"currency":"CNY"}}'),
        ("GET", "/v3/pay/transactions/out-trade-no/PN2026%2A1101?mchid=1900007291", ""),
        ("GET", "/v3/refund/domestic/refunds/RF20261101000001", ""),
    ]:
        msg = f"{method}\n{uri}\n1793500200\n593BEC0C930BF1AFEB40B4A08C8FB242\n{body_s}\n".encode()
        reqs.append({"method": method, "uri": uri, "timestamp": "1793500200", "nonce": "593BEC0C930BF1AFEB40B4A08C8FB242",
                     "body": body_s, "signature": sign(MERCHANT_KEY, msg)})
    out["requests"] = reqs
    # client-side pay params
    out["jsapi"] = {"appId": "wxd678efh567hg6787", "timeStamp": "1793500200", "nonceStr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                    "package": "prepay_id=wx01093000123456789abcdef0123456789",
                    "paySign": sign(MERCHANT_KEY, b"wxd678efh567hg6787\n1793500200\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx01093000123456789abcdef0123456789\n")}
    out["app"] = {"appid": "wxd678efh567hg6787", "partnerid": "1900007291", "prepayid": "wx01093000123456789abcdef0123456789",
                  "timestamp": "1793500200", "noncestr": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
                  "sign": sign(MERCHANT_KEY, b"wxd678efh567hg6787\n1793500200\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nwx01093000123456789abcdef0123456789\n")}

    # ---- certificate download answer: encrypted platform_cert.pem, signed by that cert's key ----
    pem = open(PLATFORM_CERT).read()
    cnonce = "4b9c1d2e3f5a"
    cert_ct = gcm_b64(APIV3_KEY, cnonce, "certificate", pem)
    serial = openssl("x509", "-in", PLATFORM_CERT, "-noout", "-serial").decode().strip().split("=")[1]
    not_before = openssl("x509", "-in", PLATFORM_CERT, "-noout", "-startdate").decode().strip().split("=")[1]
    not_after = openssl("x509", "-in", PLATFORM_CERT, "-noout", "-enddate").decode().strip().split("=")[1]
    cbody = json.dumps({"data": [{"serial_no": serial, "effective_time": "2026-01-01T00:00:00+08:00",
                                  "expire_time": "2035-12-31T00:00:00+08:00",
                                  "encrypt_certificate": {"algorithm": "AEAD_AES_256_GCM", "associated_data": "certificate",
                                                          "nonce": cnonce, "ciphertext": cert_ct}}]}, separators=(",", ":"))
    import calendar, time
    cts = calendar.timegm(time.strptime(not_before, "%b %d %H:%M:%S %Y %Z")) + 86400  # a day into validity
    out["certificates"] = notification("certificates", cbody, cts, "Cert5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc", serial, key=OTHER_KEY,
                                       note="GET /v3/certificates answer (%s .. %s)" % (not_before, not_after))
    out["certificates"]["serial"] = serial

    # ---- APIv2 ----
    fields = {"appid": "wx2421b1c4370ec43b", "attach": "支付测试", "bank_type": "CFT", "cash_fee": "1", "fee_type": "CNY",
              "is_subscribe": "Y", "mch_id": "10000100", "nonce_str": "5d2b6c2a8db53831f7eda20af46e531c",
              "openid": "oUpF8uMEb4qRXf22hE3X68TekukE", "out_trade_no": "1409811653", "result_code": "SUCCESS",
              "return_code": "SUCCESS", "time_end": "20140903131540", "total_fee": "2599", "trade_type": "JSAPI",
              "transaction_id": "1004400740201409030005092168", "device_info": "", "version": "1.0",
              "promotion_detail": '{"promotion_detail":[{"promotion_id":"109519","amount":5}]}'}

    def v2_sign(f, kind):
        s = "&".join(f"{k}={v}" for k, v in sorted(f.items()) if v != "" and k != "sign") + "&key=" + APIV2_KEY
        if kind == "MD5":
            return hashlib.md5(s.encode()).hexdigest().upper()
        return hmac.new(APIV2_KEY.encode(), s.encode(), hashlib.sha256).hexdigest().upper()

    def v2_xml(f, cdata=True):
        parts = []
        for k, v in f.items():
            if cdata:
                parts.append(f"<{k}><![CDATA[{v}]]></{k}>")
            else:
                parts.append(f"<{k}>{v.replace('&', '&amp;').replace('<', '&lt;')}</{k}>")
        return "<xml>" + "".join(parts) + "</xml>"

    v2 = []
    f_md5 = dict(fields)
    f_md5["sign"] = v2_sign(f_md5, "MD5")
    v2.append({"name": "v2_md5", "body": v2_xml(f_md5), "expect": "valid"})
    v2.append({"name": "v2_md5_no_cdata", "body": v2_xml(f_md5, cdata=False), "expect": "valid"})
    f_h = dict(fields)
    f_h["sign_type"] = "HMAC-SHA256"
    f_h["sign"] = v2_sign(f_h, "HMAC")
    v2.append({"name": "v2_hmac", "body": v2_xml(f_h), "expect": "valid"})
    f_t = dict(f_md5)
    f_t["total_fee"] = "1"
    v2.append({"name": "v2_md5_tampered", "body": v2_xml(f_t), "expect": "signature_invalid"})
    f_d = dict(f_md5)
    del f_d["version"]
    v2.append({"name": "v2_md5_dropped_field", "body": v2_xml(f_d), "expect": "signature_invalid"})
    f_w = dict(fields)
    f_w["sign_type"] = "HMAC-SHA256"
    f_w["sign"] = v2_sign(f_w, "MD5")
    v2.append({"name": "v2_hmac_declared_md5_signed", "body": v2_xml(f_w), "expect": "valid",
               "note": "sign_type says HMAC-SHA256 but the 32-char sign is MD5 (reported in the wild): chosen by length"})
    out["v2_key"] = APIV2_KEY
    out["v2"] = v2

    # refund req_info
    plain = ("<root><out_refund_no><![CDATA[RF20261102000001]]></out_refund_no><out_trade_no><![CDATA[1409811653]]></out_trade_no>"
             "<refund_account><![CDATA[REFUND_SOURCE_UNSETTLED_FUNDS]]></refund_account><refund_fee><![CDATA[1000]]></refund_fee>"
             "<refund_id><![CDATA[50000408942026110200000000001]]></refund_id><refund_recv_accout><![CDATA[招商银行信用卡0403]]></refund_recv_accout>"
             "<refund_request_source><![CDATA[VENDOR_PLATFORM]]></refund_request_source><refund_status><![CDATA[SUCCESS]]></refund_status>"
             "<settlement_refund_fee><![CDATA[1000]]></settlement_refund_fee><settlement_total_fee><![CDATA[2599]]></settlement_total_fee>"
             "<success_time><![CDATA[2026-11-02 09:30:05]]></success_time><total_fee><![CDATA[2599]]></total_fee>"
             "<transaction_id><![CDATA[1004400740201409030005092168]]></transaction_id></root>")
    aes_key = hashlib.md5(APIV2_KEY.encode()).hexdigest().encode()
    req_info = base64.b64encode(openssl("enc", "-aes-256-ecb", "-K", aes_key.hex(), data=plain.encode())).decode()
    outer = ("<xml><return_code>SUCCESS</return_code><appid><![CDATA[wx2421b1c4370ec43b]]></appid><mch_id><![CDATA[10000100]]></mch_id>"
             "<nonce_str><![CDATA[TeqClE3i0mvn3DrK]]></nonce_str><req_info><![CDATA[" + req_info + "]]></req_info></xml>")
    out["v2_refund"] = {"body": outer, "req_info": req_info, "plaintext": plain}
    other = hashlib.md5(b"00000000000000000000000000000000").hexdigest().encode()
    out["v2_refund_other_key"] = base64.b64encode(openssl("enc", "-aes-256-ecb", "-K", other.hex(), data=plain.encode())).decode()

    with open(os.path.join(TD, "own_vectors.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
