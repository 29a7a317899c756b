package webhook

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The SSRF guard (docs/webhooks.md, "SSRF guard").
//
// An endpoint's URL is checked when it is saved (CheckURL), and the address of every connection
// is checked again at connect time, after DNS resolution, by the dialer's Control hook
// (DialControl, used by NewClient): a name that resolves, or later re-resolves (DNS rebinding),
// to a refused address is never connected to. Redirects are never followed.
//
// Refused, unless webhooks.allow_private_networks:
//   - IPv4: 0.0.0.0/8 (this network, incl. the unspecified 0.0.0.0), 10/8, 172.16/12,
//     192.168/16 (private), 100.64/10 (shared, CGNAT), 127/8 (loopback), 169.254/16
//     (link-local, incl. the cloud metadata address 169.254.169.254), 192.0.0.0/24 (IETF
//     protocol assignments), the documentation ranges 192.0.2.0/24, 198.51.100.0/24 and
//     203.0.113.0/24, 192.88.99.0/24 (the deprecated 6to4 relay anycast), 198.18.0.0/15
//     (benchmarking), 224/4 (multicast), 240/4 (reserved) and 255.255.255.255 (broadcast).
//     The documentation ranges are never a real destination; a network that uses them inside
//     is a private network, so they are refused with the rest.
//   - IPv6: every address outside the global unicast space 2000::/3 (::, ::1, fc00::/7,
//     fe80::/10, fec0::/10, ff00::/8, 100::/64, ...), except the forms below that embed an
//     IPv4 address; and inside 2000::/3: 2001::/32 (Teredo), 2001::/23 (IETF protocol
//     assignments), 2001:db8::/32 and 3fff::/20 (documentation).
//   - Addresses that embed an IPv4 address are judged by it: IPv4-mapped ::ffff:0:0/96
//     (::ffff:127.0.0.1 is loopback), NAT64 64:ff9b::/96, and 6to4 2002::/16 (the IPv4
//     address in bits 16–47: a host with a 6to4 tunnel sends 2002:7f00:1:: to 127.0.0.1).
//     The local-use NAT64 prefix 64:ff9b:1::/48 is refused outright (its translator is on the
//     local network). Teredo is refused outright rather than judged: the client address it
//     embeds is obfuscated, its server is a relay, and no webhook endpoint needs it.

// ErrForbiddenAddress is wrapped by every error of the guard that refuses an address: errors.Is
// tells a refused destination from other connection errors.
var ErrForbiddenAddress = errors.New("webhook: forbidden destination address")

// AddrError is the guard's refusal of an address. Its message names the address and the range
// and nothing else.
type AddrError struct {
	Addr  netip.Addr   // the address refused, as given
	Kind  string       // "private", "loopback", "link-local", ...
	Range netip.Prefix // the refused range it is in (for Kind "non-global": 2000::/3, which it is outside); invalid for an invalid address
	// Via, when the address was judged by an IPv4 address it embeds, names the form (e.g.
	// "IPv4-mapped") and Embedded is that IPv4 address (Range is then the IPv4 range).
	Via      string
	Embedded netip.Addr
}

func (e *AddrError) Error() string { return "webhook: " + e.describe() }

// Unwrap makes errors.Is(err, ErrForbiddenAddress) true.
func (e *AddrError) Unwrap() error { return ErrForbiddenAddress }

func (e *AddrError) describe() string {
	if !e.Addr.IsValid() {
		return "invalid address"
	}
	where := e.Range.String()
	if e.Kind == nonGlobal {
		where = "outside the global unicast range " + where
	}
	if e.Via != "" {
		where = fmt.Sprintf("%s, %s %s", e.Range, e.Via, e.Embedded)
	}
	return fmt.Sprintf("%s is %s %s address (%s); set webhooks.allow_private_networks to allow it",
		e.Addr, article(e.Kind), e.Kind, where)
}

func article(word string) string {
	if word != "" && strings.ContainsRune("aeiouAEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

type refusedRange struct {
	prefix netip.Prefix
	kind   string
}

func ranges(kind string, prefixes ...string) []refusedRange {
	r := make([]refusedRange, len(prefixes))
	for i, p := range prefixes {
		r[i] = refusedRange{netip.MustParsePrefix(p), kind}
	}
	return r
}

// refused4 and refused6 are checked in order: the first range that contains the address names
// it, so the narrower ranges come first.
var refused4 = concat(
	ranges("unspecified", "0.0.0.0/32"),
	ranges("broadcast", "255.255.255.255/32"),
	ranges("this-network", "0.0.0.0/8"),
	ranges("loopback", "127.0.0.0/8"),
	ranges("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
	ranges("link-local", "169.254.0.0/16"),
	ranges("shared (CGNAT)", "100.64.0.0/10"),
	ranges("IETF protocol assignment", "192.0.0.0/24"),
	ranges("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"),
	ranges("6to4 relay anycast", "192.88.99.0/24"),
	ranges("benchmarking", "198.18.0.0/15"),
	ranges("multicast", "224.0.0.0/4"),
	ranges("reserved", "240.0.0.0/4"),
)

var refused6 = concat(
	ranges("unspecified", "::/128"),
	ranges("loopback", "::1/128"),
	ranges("IPv4-compatible (deprecated)", "::/96"),
	ranges("IPv4-translated", "::ffff:0:0:0/96"),
	ranges("local-use NAT64", "64:ff9b:1::/48"),
	ranges("discard-only", "100::/64"),
	ranges("private", "fc00::/7"),
	ranges("link-local", "fe80::/10"),
	ranges("site-local (deprecated)", "fec0::/10"),
	ranges("multicast", "ff00::/8"),
	ranges("Teredo", "2001::/32"),
	ranges("IETF protocol assignment", "2001::/23"),
	ranges("documentation", "2001:db8::/32", "3fff::/20"),
)

// nonGlobal is the Kind of an IPv6 address outside 2000::/3 that no narrower range names; its
// Range is 2000::/3, the range it is outside of.
const nonGlobal = "non-global"

var (
	global6   = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

func concat(lists ...[]refusedRange) []refusedRange {
	var all []refusedRange
	for _, l := range lists {
		all = append(all, l...)
	}
	return all
}

// CheckIP reports whether connecting to ip is allowed: it refuses, unless allowPrivate, every
// address that is not a public unicast one (see the list above), with an *AddrError.
func CheckIP(ip netip.Addr, allowPrivate bool) error {
	if !ip.IsValid() {
		return &AddrError{Addr: ip}
	}
	if allowPrivate {
		return nil
	}
	e := checkIP(ip.WithZone("")) // prefixes never contain a zoned address
	if e != nil {
		e.Addr = ip
		return e
	}
	return nil
}

func checkIP(ip netip.Addr) *AddrError {
	if ip.Is4In6() {
		return embedded(ip.Unmap(), "IPv4-mapped")
	}
	if ip.Is4() {
		for _, r := range refused4 {
			if r.prefix.Contains(ip) {
				return &AddrError{Kind: r.kind, Range: r.prefix}
			}
		}
		return nil
	}
	b := ip.As16()
	if nat64.Contains(ip) {
		return embedded(netip.AddrFrom4([4]byte(b[12:16])), "NAT64")
	}
	if sixToFour.Contains(ip) {
		return embedded(netip.AddrFrom4([4]byte(b[2:6])), "6to4")
	}
	for _, r := range refused6 {
		if r.prefix.Contains(ip) {
			return &AddrError{Kind: r.kind, Range: r.prefix}
		}
	}
	if !global6.Contains(ip) {
		return &AddrError{Kind: nonGlobal, Range: global6}
	}
	return nil
}

func embedded(v4 netip.Addr, via string) *AddrError {
	e := checkIP(v4)
	if e != nil {
		e.Via, e.Embedded = via, v4
	}
	return e
}

// DialControl returns a net.Dialer Control function that checks, with CheckIP, the address of
// each connection attempt: the address after DNS resolution, so that a name resolving (or
// rebinding) to a refused address is never connected to. DNS queries themselves are made by the
// resolver's own dialer and are not affected.
func DialControl(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%w: cannot check the %s address %q", ErrForbiddenAddress, network, address)
		}
		return CheckIP(ap.Addr(), false)
	}
}

// DefaultTimeout is the time an attempt may take (issue: "timeouts (10 s)").
const DefaultTimeout = 10 * time.Second

// NewClient returns the HTTP client that delivers webhooks: no proxy (never one from the
// environment), every connection checked by DialControl, keep-alive connections (up to 64 idle
// per host: deliveries go to few hosts at a high rate), TLS 1.2 or later, HTTP/2 when the server
// offers it, and timeout (DefaultTimeout when <= 0) for the whole request. Redirects are not
// followed: a 3xx is returned as the answer.
func NewClient(allowPrivate bool, timeout time.Duration) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dialer := &net.Dialer{
		Timeout:   timeout,
		KeepAlive: 30 * time.Second,
		Control:   DialControl(allowPrivate),
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// urlError is CheckURL's error: "url: ..." names the field for the API.
type urlError struct {
	msg string
	err error
}

func (e *urlError) Error() string { return "url: " + e.msg }
func (e *urlError) Unwrap() error { return e.err }

func badURL(format string, args ...any) error {
	return &urlError{msg: fmt.Sprintf(format, args...)}
}

// CheckURL checks an endpoint's URL when it is saved: an absolute https URL (http too when
// allowHTTP) with a host, no user info and no fragment. A literal IP host is checked with CheckIP
// at once; a name is checked at connect time by the client (NewClient), except "localhost" and
// the names under ".localhost", refused here unless allowPrivate. A host whose last label is
// numeric (a non-standard IPv4 form such as 2130706433 or 127.1, which some resolvers read as an
// address) is refused. Errors read "url: ..." and never repeat the URL, which may hold a token.
func CheckURL(raw string, allowHTTP, allowPrivate bool) error {
	if raw == "" {
		return badURL("required")
	}
	if len(raw) > 2048 {
		return badURL("longer than 2048 characters")
	}
	for _, r := range raw {
		if r <= ' ' || r == 0x7f {
			return badURL("must not contain spaces or control characters")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return badURL("not a valid URL: %v", err)
	}
	switch {
	case u.Scheme == "":
		return badURL("must be an absolute URL (https://...)")
	case u.Scheme == "http" && !allowHTTP:
		return badURL("must use https (set webhooks.allow_http to allow http)")
	case u.Scheme != "https" && u.Scheme != "http":
		if allowHTTP {
			return badURL("scheme %q is not supported: use https or http", u.Scheme)
		}
		return badURL("scheme %q is not supported: use https", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return badURL("must have a host (https://host/...)")
	case u.User != nil:
		return badURL("must not contain user info")
	case strings.Contains(raw, "#"):
		return badURL("must not contain a fragment")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return badURL("invalid port")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return badURL("invalid port")
	}
	host := u.Hostname()
	if host == "" {
		return badURL("must have a host (https://host/...)")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := CheckIP(ip, allowPrivate); err != nil {
			var ae *AddrError
			if errors.As(err, &ae) {
				return &urlError{msg: ae.describe(), err: err}
			}
			return &urlError{msg: err.Error(), err: err}
		}
		return nil
	}
	if strings.HasPrefix(u.Host, "[") {
		return badURL("invalid IPv6 address")
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "" || strings.Contains(name, "..") || strings.HasPrefix(name, ".") {
		return badURL("invalid host name")
	}
	labels := strings.Split(name, ".")
	if numericLabel(labels[len(labels)-1]) {
		return badURL("host is neither a name nor an IP address in standard form")
	}
	if !allowPrivate && (name == "localhost" || strings.HasSuffix(name, ".localhost")) {
		return &urlError{msg: "localhost is a loopback name; set webhooks.allow_private_networks to allow it",
			err: ErrForbiddenAddress}
	}
	return nil
}

// numericLabel reports whether a host's last label reads as a number (decimal, octal or 0x hex),
// which makes the WHATWG URL parser and inet_aton take the host as an IPv4 address.
func numericLabel(l string) bool {
	if l == "" {
		return false
	}
	if len(l) >= 2 && (l[:2] == "0x" || l[:2] == "0X") {
		for _, c := range l[2:] {
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
		return true
	}
	for _, c := range l {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
