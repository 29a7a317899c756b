// Package alipay implements the merchant side of the Alipay Open Platform "gateway.do" protocol:
// key loading (public-key and public-key-certificate modes), byte-exact request signing, the app-pay
// orderString, page and wap pay URLs and forms, an API client whose responses are verified over the
// raw bytes of the response node, and verification of asynchronous notifications over the raw POST
// body.
//
// The rules it follows, and why, are in docs/alipay.md of the repository. In short:
//
//   - Notifications are verified over the body exactly as received: percent-decoded once into bytes
//     (in whatever charset the notification declares, GBK included), never HTML-unescaped, never
//     re-encoded; duplicate keys are rejected. Values are converted to UTF-8 only after the
//     signature has been verified.
//   - The configured [SignType] decides the hash; the message's own sign_type field is ignored, so a
//     SHA-1 signature never passes where RSA2 is configured.
//   - Money is int64 fen (1 yuan = 100 fen), parsed strictly; times are Beijing time in a fixed
//     UTC+8 zone whatever the host's time zone.
//   - Verification failures are vague outward ([ErrSignature], [ErrMalformed], [ErrDuplicateKey]) and
//     precise for logs and evidence through [VerifyError].
//
// Notifications have two entry points: [Client.VerifyNotification] (request header and raw body)
// and [Client.VerifyNotificationRequest] (an *http.Request, its body read once with a size limit).
// The building blocks of Alipay's own side (canonical request strings, response signing) are not
// part of this package: the repository's sandbox has them in internal/alipaywire.
package alipay
