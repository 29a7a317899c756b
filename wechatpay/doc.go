// Package wechatpay is the WeChat Pay (微信支付) half of paynotify's protocol layer.
//
// It covers APIv3 request signing (the WECHATPAY2-SHA256-RSA2048 Authorization header), the
// verification of responses and payment-result notifications over the raw body bytes with the
// WeChat Pay public key (PUB_KEY_ID_…) and/or platform certificates selected by serial, the
// AEAD_AES_256_GCM decryption of notification resources with the APIv3 key, the client-side
// payment parameters for APP and JSAPI, an API client (prepay, query, close, refunds, platform
// certificate download), and APIv2 XML notifications (MD5 / HMAC-SHA256 signatures and the
// AES-256-ECB refund req_info).
//
// Verification follows the order of the protocol: the four Wechatpay-* headers must be present,
// WECHATPAY/SIGNTEST/ probes are rejected, the timestamp must be less than five minutes away from
// the injected clock, the serial must name a configured key, and the signature must verify over
// "timestamp\nnonce\nbody\n" before the body is parsed or decrypted. Failures return a *VerifyError
// whose Reason is one of the stable evidence reasons (docs/api.md, "Evidence") and which wraps one
// of the sentinels (ErrSignature, ErrTimestampSkew, ErrProbe, ErrUnknownSerial, ErrDecrypt,
// ErrMalformed); its Error text is deliberately vague.
//
// Secrets (private keys, the APIv3 and APIv2 keys) never appear in errors.
//
// The package imports only the standard library.
package wechatpay
