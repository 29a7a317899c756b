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
// Notifications have two entry points: [Client.VerifyNotification] (request header and raw body)
// and [Client.VerifyNotificationRequest] (an *http.Request, its body read once with a size limit),
// the same shape as package alipay. The building blocks of WeChat Pay's own side (signed headers,
// resource encryption, whole notifications) are not part of this package: the repository's
// sandbox has them in internal/wechatpaywire.
//
// Secrets (private keys, the APIv3 and APIv2 keys) never appear in errors.
//
// The package imports only the standard library and internal/wechatpaywire, which imports only
// the standard library.
package wechatpay
