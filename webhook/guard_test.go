package webhook

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests decide on addresses without connecting to them; the only connections they make
// are to test servers on 127.0.0.1.

func TestCheckIP(t *testing.T) {
	tests := []struct {
		ip   string
		kind string // "" = allowed
	}{
		{"10.0.0.1", "private"},
		{"172.16.5.4", "private"},
		{"172.31.255.255", "private"},
		{"192.168.1.1", "private"},
		{"169.254.169.254", "link-local"},
		{"127.0.0.1", "loopback"},
		{"127.8.9.10", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:10.1.2.3", "private"},
		{"::ffff:169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fc00::1", "private"},
		{"fd12:3456::1", "private"},
		{"fec0::1", "site-local (deprecated)"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "this-network"},
		{"::", "unspecified"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"ff02::1", "multicast"},
		{"100.64.0.1", "shared (CGNAT)"},
		{"100.127.255.254", "shared (CGNAT)"},
		{"192.0.0.8", "IETF protocol assignment"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "broadcast"},
		// Documentation ranges are refused (never a real destination).
		{"192.0.2.1", "documentation"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.10", "documentation"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		// Embedded IPv4 judged by it.
		{"64:ff9b::7f00:1", "loopback"},           // NAT64 of 127.0.0.1
		{"64:ff9b::a9fe:a9fe", "link-local"},      // NAT64 of 169.254.169.254
		{"64:ff9b::808:808", ""},                  // NAT64 of 8.8.8.8
		{"64:ff9b:1::1", "local-use NAT64"},       // refused outright
		{"2002:7f00:1::1", "loopback"},            // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", "private"},           // 6to4 of 192.168.1.1
		{"2002:808:808::1", ""},                   // 6to4 of 8.8.8.8
		{"2001:0:4136:e378::1", "Teredo"},         // refused outright
		{"2001:2::1", "IETF protocol assignment"}, // benchmarking
		{"::a00:1", "IPv4-compatible (deprecated)"},
		{"100::1", "discard-only"},
		{"5f00::1", "non-global"},
		// Public addresses: allowed by the decision (never connected to).
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001::1", ""},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		err := CheckIP(ip, false)
		if tt.kind == "" {
			if err != nil {
				t.Errorf("CheckIP(%s) = %v, want allowed", tt.ip, err)
			}
		} else {
			var ae *AddrError
			switch {
			case !errors.As(err, &ae):
				t.Errorf("CheckIP(%s) = %v, want an *AddrError (%s)", tt.ip, err, tt.kind)
			case ae.Kind != tt.kind:
				t.Errorf("CheckIP(%s) kind = %q, want %q (%v)", tt.ip, ae.Kind, tt.kind, err)
			case !errors.Is(err, ErrForbiddenAddress):
				t.Errorf("CheckIP(%s): errors.Is(ErrForbiddenAddress) is false", tt.ip)
			case !strings.Contains(err.Error(), tt.ip) || !strings.Contains(err.Error(), ae.Range.String()):
				t.Errorf("CheckIP(%s) = %q: does not name the address and the range", tt.ip, err)
			}
		}
		// allow_private_networks lets every valid address through.
		if err := CheckIP(ip, true); err != nil {
			t.Errorf("CheckIP(%s, allowPrivate) = %v", tt.ip, err)
		}
	}
	if err := CheckIP(netip.Addr{}, true); err == nil {
		t.Error("CheckIP(invalid, allowPrivate) = nil")
	}
}

func TestCheckIPMessages(t *testing.T) {
	for ip, want := range map[string]string{
		"10.0.0.1":         "webhook: 10.0.0.1 is a private address (10.0.0.0/8); set webhooks.allow_private_networks to allow it",
		"169.254.169.254":  "webhook: 169.254.169.254 is a link-local address (169.254.0.0/16); set webhooks.allow_private_networks to allow it",
		"::1":              "webhook: ::1 is a loopback address (::1/128); set webhooks.allow_private_networks to allow it",
		"::ffff:127.0.0.1": "webhook: ::ffff:127.0.0.1 is a loopback address (127.0.0.0/8, IPv4-mapped 127.0.0.1); set webhooks.allow_private_networks to allow it",
		"0.0.0.0":          "webhook: 0.0.0.0 is an unspecified address (0.0.0.0/32); set webhooks.allow_private_networks to allow it",
	} {
		err := CheckIP(netip.MustParseAddr(ip), false)
		if err == nil || err.Error() != want {
			t.Errorf("CheckIP(%s) = %v, want %q", ip, err, want)
		}
	}
}

func TestDialControl(t *testing.T) {
	refuse, allow := DialControl(false), DialControl(true)
	tests := []struct {
		network, address string
		ok               bool
	}{
		{"tcp4", "10.0.0.1:443", false},
		{"tcp4", "169.254.169.254:80", false},
		{"tcp4", "127.0.0.1:8080", false},
		{"tcp6", "[::1]:443", false},
		{"tcp6", "[::ffff:127.0.0.1]:443", false},
		{"tcp6", "[fe80::1%eth0]:443", false},
		{"tcp4", "0.0.0.0:80", false},
		{"tcp4", "8.8.8.8:443", true},
		{"tcp6", "[2606:4700:4700::1111]:443", true},
		{"tcp", "not-an-address", false},
		{"unix", "/run/x.sock", false},
	}
	for _, tt := range tests {
		err := refuse(tt.network, tt.address, nil)
		if (err == nil) != tt.ok {
			t.Errorf("DialControl(false)(%s, %s) = %v, want ok=%v", tt.network, tt.address, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("DialControl(false)(%s, %s) = %v: not ErrForbiddenAddress", tt.network, tt.address, err)
		}
		if err := allow(tt.network, tt.address, nil); err != nil {
			t.Errorf("DialControl(true)(%s, %s) = %v", tt.network, tt.address, err)
		}
	}
}

// TestGuardResolverAnswers: the name localhost resolves (through the system's resolver, from
// /etc/hosts) to loopback addresses, each refused.
func TestGuardResolverAnswers(t *testing.T) {
	addrs, err := net.DefaultResolver.LookupNetIP(t.Context(), "ip", "localhost")
	if err != nil || len(addrs) == 0 {
		t.Fatalf("resolve localhost: %v %v", addrs, err)
	}
	for _, a := range addrs {
		if err := CheckIP(a, false); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("localhost → %s: CheckIP = %v, want refused", a, err)
		}
	}
}

func TestCheckURL(t *testing.T) {
	tests := []struct {
		url                     string
		allowHTTP, allowPrivate bool
		err                     string // substring; "" = ok
	}{
		{"", false, false, "url: required"},
		{"://nope", false, false, "url: not a valid URL"},
		{"https://exa mple.com/", false, false, "url: must not contain spaces"},
		{"https://example.com/\x00", false, false, "url: must not contain spaces or control"},
		{"/relative/hook", false, false, "url: must be an absolute URL"},
		{"example.com/hook", false, false, "url: must be an absolute URL"},
		{"ftp://example.com/hook", false, false, `url: scheme "ftp" is not supported`},
		{"ftp://example.com/hook", true, false, `url: scheme "ftp" is not supported: use https or http`},
		{"http://example.com/hook", false, false, "url: must use https (set webhooks.allow_http"},
		{"http://example.com/hook", true, false, ""},
		{"HTTPS://example.com/hook", false, false, ""},
		{"https:example.com", false, false, "url: must have a host"},
		{"https:///hook", false, false, "url: must have a host"},
		{"https://user:secret@example.com/hook", false, false, "url: must not contain user info"},
		{"https://user@example.com/hook", false, false, "url: must not contain user info"},
		{"https://example.com/hook#frag", false, false, "url: must not contain a fragment"},
		{"https://example.com/hook#", false, false, "url: must not contain a fragment"},
		{"https://example.com:0/hook", false, false, "url: invalid port"},
		{"https://example.com:70000/hook", false, false, "url: invalid port"},
		{"https://example.com:/hook", false, false, "url: invalid port"},
		{"https://10.0.0.1/", false, false, "url: 10.0.0.1 is a private address (10.0.0.0/8); set webhooks.allow_private_networks"},
		{"https://10.0.0.1/", false, true, ""},
		{"https://169.254.169.254/latest/meta-data", false, false, "link-local"},
		{"https://127.0.0.1:8443/", false, false, "loopback"},
		{"https://[::1]/", false, false, "url: ::1 is a loopback address"},
		{"https://[::ffff:127.0.0.1]/", false, false, "loopback"},
		{"https://[fe80::1%25eth0]/", false, false, "link-local"},
		{"https://[::1/", false, false, "url: not a valid URL"},
		{"https://localhost/", false, false, "url: localhost is a loopback name"},
		{"https://LocalHost./", false, false, "url: localhost is a loopback name"},
		{"https://api.localhost:8443/", false, false, "url: localhost is a loopback name"},
		{"https://localhost/", false, true, ""},
		{"https://localhost.example.com/", false, false, ""},
		{"https://2130706433/", false, false, "url: host is neither a name nor an IP address in standard form"},
		{"https://127.1/", false, false, "url: host is neither"},
		{"https://0x7f000001/", false, false, "url: host is neither"},
		{"https://a..b/", false, false, "url: invalid host name"},
		{"https://example.com/hook", false, false, ""},
		{"https://example.com/hook?token=abc", false, false, ""},
		{"https://8.8.8.8/hook", false, false, ""},
		{"https://[2606:4700:4700::1111]:8443/hook", false, false, ""},
	}
	for _, tt := range tests {
		err := CheckURL(tt.url, tt.allowHTTP, tt.allowPrivate)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("CheckURL(%q, %v, %v) = %v, want ok", tt.url, tt.allowHTTP, tt.allowPrivate, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("CheckURL(%q, %v, %v) = %v, want %q", tt.url, tt.allowHTTP, tt.allowPrivate, err, tt.err)
		case err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "token")):
			t.Errorf("CheckURL(%q) = %q repeats the URL", tt.url, err)
		}
	}
	if err := CheckURL("https://10.0.0.1/", false, false); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("CheckURL(private): errors.Is(ErrForbiddenAddress) false: %v", err)
	}
}

func TestNewClientSettings(t *testing.T) {
	c := NewClient(false, 7*time.Second)
	tr, ok := c.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("Transport is %T", c.Transport)
	}
	if tr.Proxy != nil {
		t.Error("Proxy is set: the client must never use a proxy")
	}
	if tr.DisableKeepAlives || tr.MaxIdleConnsPerHost != 64 {
		t.Errorf("keep-alives: DisableKeepAlives %v, MaxIdleConnsPerHost %d", tr.DisableKeepAlives, tr.MaxIdleConnsPerHost)
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || tr.TLSClientConfig.InsecureSkipVerify {
		t.Errorf("TLS config %+v", tr.TLSClientConfig)
	}
	if !tr.ForceAttemptHTTP2 {
		t.Error("ForceAttemptHTTP2 is false")
	}
	if tr.ResponseHeaderTimeout != 7*time.Second || c.Timeout != 7*time.Second {
		t.Errorf("timeouts %v %v", tr.ResponseHeaderTimeout, c.Timeout)
	}
	if c.CheckRedirect == nil || c.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Error("CheckRedirect does not return http.ErrUseLastResponse")
	}
	if NewClient(false, 0).Timeout != DefaultTimeout {
		t.Error("timeout 0 is not DefaultTimeout")
	}
}

// TestGuardClientLoopback: end to end, on loopback only. A name resolving to loopback, and the
// loopback address itself, are refused at connect time; allowPrivate lets them through.
func TestGuardClientLoopback(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	byName := "http://localhost:" + strconv.Itoa(port) + "/"

	for _, u := range []string{byName, srv.URL + "/"} {
		resp, err := NewClient(false, 5*time.Second).Post(u, "application/json", strings.NewReader("{}"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("POST %s with allowPrivate false: %s, want refused", u, resp.Status)
		}
		var ae *AddrError
		if !errors.Is(err, ErrForbiddenAddress) || !errors.As(err, &ae) || ae.Kind != "loopback" {
			t.Errorf("POST %s: %v, want the guard's loopback error", u, err)
		}
		if !strings.Contains(err.Error(), "is a loopback address") {
			t.Errorf("POST %s: %q", u, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server got %d requests through the guard", n)
	}

	resp, err := NewClient(true, 5*time.Second).Post(byName, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("POST %s with allowPrivate true: %v", byName, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || hits.Load() != 1 {
		t.Fatalf("allowPrivate: status %d, hits %d", resp.StatusCode, hits.Load())
	}
}

// TestGuardClientRedirect: a 302 (to another loopback server) is returned as the answer and not
// followed.
func TestGuardClientRedirect(t *testing.T) {
	var second atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		second.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer target.Close()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/elsewhere", http.StatusFound)
	}))
	defer first.Close()

	resp, err := NewClient(true, 5*time.Second).Post(first.URL+"/hook", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status %d, want 302 returned as the answer", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != target.URL+"/elsewhere" {
		t.Errorf("Location %q", loc)
	}
	if n := second.Load(); n != 0 {
		t.Errorf("the redirect was followed: the second server got %d requests", n)
	}
}

// TestGuardClientTimeout: a server slower than the timeout fails the attempt, by the timeout: the
// request reached the server, and the error is a timeout after at least the time given (a
// reviewer helper's finding: the test also passed with a client that refused to connect).
func TestGuardClientTimeout(t *testing.T) {
	release := make(chan struct{})
	var reached atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	start := time.Now()
	resp, err := NewClient(true, 300*time.Millisecond).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		t.Fatal("no timeout")
	}
	d := time.Since(start)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("error %v, want a timeout", err)
	}
	if reached.Load() != 1 || d < 300*time.Millisecond || d > 3*time.Second {
		t.Errorf("the server got %d requests; the error came after %v, want 1 request and 300ms-3s", reached.Load(), d)
	}
}
