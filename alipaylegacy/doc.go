// Package alipaylegacy implements the merchant side of Alipay's legacy protocols, those of the
// demo packages that old PHP and Java shops still run (docs/alipay-legacy.md
// describes them):
//
//   - the mapi gateway (https://mapi.alipay.com/gateway.do): create_direct_pay_by_user (即时到账),
//     trade_create_by_buyer (双功能) and create_partner_trade_by_buyer (纯担保), with their async
//     notifications, return_url visits and the notify_verify check;
//   - the old WAP pair: alipay.wap.trade.create.direct (a server call that returns a
//     request_token), alipay.wap.auth.authAndExecute (the buyer's browser), the call_back_url
//     visit and the async notification whose XML notify_data is signed in a fixed order.
//
// Alipay no longer offers these services to new merchants (docs/alipay-legacy.md §1): this package
// is for merchants who hold such contracts, and for moving them to the OpenAPI (package alipay).
// Nothing here is a way to start a new integration.
//
// # Configuration
//
// A [Config] holds what alipay.config.php holds: the partner (PID), the sign type (MD5 with the
// 32-character key, or RSA with Alipay's public key and the merchant's private key; RSA is sec_id
// 0001 on the WAP pair), the input charset (utf-8 or gbk) and the receiving account. Load keys with
// [ParsePrivateKey] and [ParsePublicKey] (PEM or one-line base64, PKCS#1 or PKCS#8). The
// configuration alone chooses the algorithm: a message that declares another sign_type or sec_id is
// rejected, so a notification can never downgrade an RSA merchant to MD5.
//
// # A notification counts only after NotifyVerify returns nil
//
// Handle an async notification in this order, and answer with exactly [AckSuccess] or [AckFail]:
//
//  1. Read the raw body and call [Client.VerifyNotification]. It checks the signature over the
//     bytes as received (decoded once, in the configured charset, never re-encoded), decrypts a
//     `0001` notify_data, requires notify_id, out_trade_no, trade_no, trade_status and total_fee,
//     and converts amounts to int64 fen. An error means: not from Alipay, or not usable; answer
//     AckFail (nothing to apply).
//  2. Call [Client.NotifyVerify] with n.NotifyID. Only a nil error makes the notification
//     genuine and current: Alipay answered exactly "true". [ErrNotConfirmed] means it is not (do
//     not apply it); [ErrNotifyVerifyUnavailable] means Alipay could not be asked (answer AckFail:
//     Alipay sends it again).
//  3. Check the order: n.OutTradeNo is yours, n.TotalFee is its amount, [Client.SellerMatches]
//     holds, and n.TradeStatus says paid ([Notification.IsPaid]). Apply the change once, durably.
//  4. Answer AckSuccess, also for verified notifications you ignore on purpose; anything else
//     makes Alipay retry for about 25 hours.
//
// VerifyNotification never calls the network and never skips a check the official code skips:
// there is no "notify_id missing, assume true" (a missing notify_id is [ReasonMissingField]), no
// `==` comparison of MD5 signs (they are compared in constant time, case-sensitively), no
// `(bool)openssl_verify` (only a successful RSA verification counts), and no /true$/i on the
// notify_verify answer.
//
// Browser returns (mapi return_url, WAP call_back_url) go through [Client.VerifyReturn]. They are
// display only: never mark an order paid from a return.
//
// # Requests
//
// [Client.DirectPayURL] and [Client.DirectPayForm] build a signed create_direct_pay_by_user request;
// [Client.EscrowURL] and [Client.EscrowForm] the two escrow services ([EscrowTrade] carries the
// service name). [Client.WAPCreateDirect] and [Client.WAPAuthURL] are the two steps of the old WAP
// pair. Amounts go in as int64 fen and are sent as "88.88"; strings go in as UTF-8 and are
// converted to the configured charset before signing.
//
// # Errors
//
// A rejected message is a [*VerifyError]: its Error text is vague (the wrapped sentinel,
// [ErrSignature], [ErrDecrypt], [ErrMalformed], [ErrDuplicateKey] or [ErrWrongPartner]), its
// Reason a short stable code for evidence (signature_invalid, unsigned, unsupported_sign_type,
// decrypt_failed, missing_field, duplicate_key, malformed, bad_charset, bad_amount, wrong_partner,
// req_id_mismatch), its Detail the precise cause for operators, and its Canonical the string that
// was checked.
//
// The building blocks ([ParseForm], [CanonicalSorted], [CanonicalWAPNotify], [MD5Sign],
// [MD5Verify], [RSASign], [RSAVerify], [DecryptData]) are exported for tools such as
// `paynotify verify alipay-legacy --explain`.
package alipaylegacy
