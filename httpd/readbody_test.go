package httpd_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/paynotify/paynotify/httpd"
)

// TestReadCallbackBody: a callback's body is read whole up to the limit and one byte further,
// whether it declares its length or comes chunked, over a real socket.
func TestReadCallbackBody(t *testing.T) {
	const limit = 16
	type got struct {
		body   []byte
		err    error
		length int64 // the request's Content-Length as the server saw it; -1: chunked
	}
	results := make(chan got, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := httpd.ReadCallbackBody(r, limit)
		results <- got{b, err, r.ContentLength}
	}))
	t.Cleanup(srv.Close)

	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		want    string
	}{
		{"empty", "", false, ""},
		{"under the limit", "a=1&b=2", false, "a=1&b=2"},
		{"at the limit", strings.Repeat("x", limit), false, strings.Repeat("x", limit)},
		{"one over", strings.Repeat("y", limit+1), false, strings.Repeat("y", limit+1)},
		{"far over", strings.Repeat("z", 10*limit), false, strings.Repeat("z", limit+1)},
		{"chunked under", "a=1&b=2", true, "a=1&b=2"},
		{"chunked far over", strings.Repeat("w", 10*limit), true, strings.Repeat("w", limit+1)},
	} {
		var rd io.Reader = strings.NewReader(tc.body)
		if tc.chunked {
			rd = io.MultiReader(rd) // no length known: the client sends it chunked
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL, rd)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		resp.Body.Close()
		g := <-results
		if g.err != nil || string(g.body) != tc.want {
			t.Errorf("%s: read %q, %v; want %q", tc.name, g.body, g.err, tc.want)
		}
		if tc.chunked != (g.length == -1) {
			t.Errorf("%s: the server saw a length of %d: the case does not test what it says", tc.name, g.length)
		}
	}

	// Over the length read into a buffer at once (64 KiB), under a limit of 1 MiB: read whole,
	// as it comes.
	big := strings.Repeat("b", 70<<10)
	bigSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := httpd.ReadCallbackBody(r, 1<<20)
		results <- got{b, err, r.ContentLength}
	}))
	t.Cleanup(bigSrv.Close)
	resp, err := http.Post(bigSrv.URL, "text/plain", strings.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if g := <-results; g.err != nil || string(g.body) != big || g.length != int64(len(big)) {
		t.Errorf("a declared 70 KiB body: read %d bytes (declared %d), %v; want all %d", len(g.body), g.length, g.err, len(big))
	}

	// A client that declares more than it sends and closes: an error, not a short body.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	conn.(*net.TCPConn).CloseWrite()
	select {
	case g := <-results:
		if g.err == nil {
			t.Errorf("a body cut short read as %q with no error", g.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no read of the cut body")
	}
	_, _ = bufio.NewReader(conn).ReadString('\n')
	conn.Close()
}
