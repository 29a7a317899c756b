package webhook

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestNATSWrongPassword: a NATS server that answers, refusing the configured credentials, is not
// "a server that does not answer": OpenNATS is an error ("Authorization Violation"), serve does
// not start, as before 072f7ea, which had serve start and say "not connected ... (retried in the
// background)" though nats.go gives up after a repeated auth error (a reviewer's finding).
func TestNATSWrongPassword(t *testing.T) {
	port := freePort(t)
	startNATSServer(t, port, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir(), "--user", "user", "--pass", "right")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err := OpenNATS(ctx, NATSConfig{URL: fmt.Sprintf("nats://user:wrong@127.0.0.1:%d", port), Stream: "S", SubjectPrefix: "p"})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("OpenNATS with a wrong password: %v; want the authorization error, without the password", err)
	}
}

// TestNATSJetStreamSilent: a NATS server that accepts the connection but whose JetStream does
// not answer (a cluster without a meta leader, a server restarting its JetStream) stopped serve:
// OpenNATS's stream check timed out and was returned as an error (a reviewer's finding). It is
// not ready instead, saying why, as a server that does not answer. The server here is a minimal
// fake speaking the core protocol (INFO, PONG) on a loopback port and ignoring JetStream's API
// requests.
func TestNATSJetStreamSilent(t *testing.T) {
	addr := fakeServer(t, func(c net.Conn) {
		fmt.Fprintf(c, "INFO {\"server_id\":\"fake\",\"version\":\"2.10.0\",\"proto\":1,\"headers\":true,\"max_payload\":1048576,\"jetstream\":true}\r\n")
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch {
			case strings.HasPrefix(line, "PING"):
				fmt.Fprint(c, "PONG\r\n")
			case strings.HasPrefix(line, "PUB ") || strings.HasPrefix(line, "HPUB "):
				f := strings.Fields(line)
				var n int
				fmt.Sscan(f[len(f)-1], &n)
				buf := make([]byte, n+2)
				if _, err := io.ReadFull(r, buf); err != nil {
					return
				}
			}
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	n, err := OpenNATS(ctx, NATSConfig{URL: "nats://" + addr, Stream: "S", SubjectPrefix: "p"})
	if err != nil {
		t.Fatalf("a NATS server whose JetStream does not answer: OpenNATS: %v; want the sink not ready, serve going on", err)
	}
	defer n.Close()
	if n.Ready() || n.StartError() == nil {
		t.Errorf("Ready %v, StartError %v; want not ready, saying why", n.Ready(), n.StartError())
	}
}

// TestNATSNotAnswering: docs/config.md: "A NATS server that does not answer when serve starts ...
// does not stop it". nats.go turns only "connection refused" into ErrNoServers; every other
// failure to reach a server (a dial timeout, a DNS failure, a proxy that accepts and closes, a
// port that accepts and says nothing) is returned as itself, and d9db957 took anything but
// ErrNoServers for "a server answered and refused" (a reviewer's finding). Such an address is
// not ready now, saying why, and serve goes on.
func TestNATSNotAnswering(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(c net.Conn)
	}{
		{"AcceptsAndCloses", func(c net.Conn) { c.Close() }},                                // docker-proxy / an L4 proxy, NATS not up yet
		{"AcceptsAndIsSilent", func(c net.Conn) { time.Sleep(5 * time.Second); c.Close() }}, // a server that does not answer
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeServer(t, tc.serve)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			n, err := OpenNATS(ctx, NATSConfig{URL: "nats://" + addr, Stream: "S", SubjectPrefix: "p"})
			if err != nil {
				t.Errorf("a NATS address that does not answer: OpenNATS: %v; serve stops (want: not ready, retried in the background)", err)
				return
			}
			defer n.Close()
			if n.Ready() || n.StartError() == nil {
				t.Errorf("Ready %v, StartError %v; want not ready, saying why", n.Ready(), n.StartError())
			}
		})
	}
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestNATSLeaderless: a JetStream cluster without a leader does not stop serve. It answers 503,
// err_code 10008 "JetStream system temporarily unavailable", a *jetstream.APIError, which
// d9db957 took for a refusal (a reviewer's finding): it is not ready now. One node of a
// three-node cluster here (the machine's nats-server), its routes to nowhere.
func TestNATSLeaderless(t *testing.T) {
	dir := t.TempDir()
	port, route := freePort(t), freePort(t)
	conf := fmt.Sprintf(`server_name: n1
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster { name: c1, listen: 127.0.0.1:%d, routes: [nats-route://127.0.0.1:%d, nats-route://127.0.0.1:%d] }
`, port, filepath.Join(dir, "js"), route, freePort(t), freePort(t))
	startNATSConfig(t, port, conf)
	time.Sleep(10 * time.Second) // the cluster has been without a leader for a while (an outage serve is restarted in)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	n, err := OpenNATS(ctx, NATSConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Stream: "S", SubjectPrefix: "p"})
	if err != nil {
		t.Fatalf("a JetStream cluster without a leader: OpenNATS: %v; serve stops", err)
	}
	defer n.Close()
	if n.Ready() || n.StartError() == nil {
		t.Errorf("Ready %v, StartError %v; want not ready, saying why", n.Ready(), n.StartError())
	}
}

// TestRefusedConnect: the connection errors that stop serve are the server's refusals
// (authorization, a certificate that does not verify, a TLS alert it sent); the others are no
// answer, retried in the background. nats.go wraps every TLS handshake failure in nats.ErrTLS,
// outages included (a reset, a timeout, a close after the handshake: a reviewer's finding), so
// that alone refuses nothing.
func TestRefusedConnect(t *testing.T) {
	remoteAlert := &net.OpError{Op: "remote error", Err: errors.New("tls: certificate required")}
	for _, tc := range []struct {
		name    string
		err     error
		refused bool
	}{
		{"Authorization", fmt.Errorf("nats: %w", nats.ErrAuthorization), true},
		{"AuthExpired", nats.ErrAuthExpired, true},
		{"UnknownAuthority", fmt.Errorf("%w: %w", nats.ErrTLS, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), true},
		{"Hostname", fmt.Errorf("%w: %w", nats.ErrTLS, x509.HostnameError{Host: "127.0.0.1"}), true},
		{"RemoteAlert", fmt.Errorf("%w: %w", nats.ErrTLS, remoteAlert), true},
		{"NoServers", nats.ErrNoServers, false},
		{"ResetInHandshake", fmt.Errorf("%w: %w", nats.ErrTLS, &net.OpError{Op: "read", Err: syscall.ECONNRESET}), false},
		{"ClosedAfterHandshake", fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, io.EOF), false},
		{"HandshakeTimeout", fmt.Errorf("%w: %w", nats.ErrTLS, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}), false},
		{"EOF", io.EOF, false},
	} {
		if got := refusedConnect(tc.err); got != tc.refused {
			t.Errorf("%s (%v): refused %v, want %v", tc.name, tc.err, got, tc.refused)
		}
	}
}

// TestNATSTransientTLS: a tls:// NATS address that goes away in the middle of the handshake (a
// server restarting) or does not finish it (an overloaded one) is not ready, retried, not a
// refusal that stops serve (a reviewer's finding: nats.ErrTLS was taken for one). Loopback fakes
// that send a NATS INFO asking for TLS.
func TestNATSTransientTLS(t *testing.T) {
	const info = "INFO {\"server_id\":\"fake\",\"version\":\"2.10.0\",\"proto\":1,\"tls_required\":true,\"max_payload\":1048576}\r\n"
	for name, serve := range map[string]func(c net.Conn){
		"ClosedMidHandshake": func(c net.Conn) {
			c.Write([]byte(info))
			c.Read(make([]byte, 512)) // the ClientHello
		},
		"HandshakeStalls": func(c net.Conn) {
			c.Write([]byte(info))
			io.Copy(io.Discard, c)
		},
	} {
		t.Run(name, func(t *testing.T) {
			addr := fakeServer(t, serve)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			n, err := OpenNATS(ctx, NATSConfig{URL: "tls://" + addr, Stream: "S", SubjectPrefix: "p"})
			if err != nil {
				t.Fatalf("a transient TLS failure: OpenNATS = %v; want not ready, serve going on", err)
			}
			defer n.Close()
			if n.Ready() || n.StartError() == nil {
				t.Errorf("Ready %v, StartError %v; want not ready, saying why", n.Ready(), n.StartError())
			}
		})
	}
}

// TestNATSAccountWithoutJetStream: JetStream is on, but not for the account of the configured
// user: 503 "not enabled for account". It is not ready, saying why, and serve goes on: a server
// whose JetStream switched itself off (a full disk) answers every account so, an outage (a
// reviewer's finding, after another read it as a refusal that stops serve).
func TestNATSAccountWithoutJetStream(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	conf := fmt.Sprintf(`listen: 127.0.0.1:%d
jetstream { store_dir: %q }
accounts { A: { users: [ { user: a, password: a } ] }, B: { jetstream: enabled, users: [ { user: b, password: b } ] } }
`, port, filepath.Join(dir, "js"))
	startNATSConfig(t, port, conf)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	n, err := OpenNATS(ctx, NATSConfig{URL: fmt.Sprintf("nats://a:a@127.0.0.1:%d", port), Stream: "S", SubjectPrefix: "p"})
	if err != nil {
		t.Fatalf("an account without JetStream: OpenNATS = %v; want not ready, serve going on", err)
	}
	defer n.Close()
	if n.Ready() || n.StartError() == nil || !strings.Contains(n.StartError().Error(), "not enabled for account") {
		t.Errorf("Ready %v, StartError %v; want not ready, saying JetStream is not enabled for the account", n.Ready(), n.StartError())
	}
}

// startNATSServer runs the machine's nats-server (/usr/sbin/nats-server, as .ci/run has it) with
// args, listening on 127.0.0.1:port, until the test ends, and waits for its listener.
func startNATSServer(t *testing.T, port int, args ...string) {
	t.Helper()
	srv := exec.Command("/usr/sbin/nats-server", args...)
	if err := srv.Start(); err != nil {
		t.Fatalf("nats-server is needed (apt-get install nats-server): %v", err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	for range 100 {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nats-server does not listen on 127.0.0.1:%d", port)
}

// startNATSConfig runs nats-server with the config conf (startNATSServer).
func startNATSConfig(t *testing.T, port int, conf string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	startNATSServer(t, port, "-c", file)
}

// fakeServer serves each connection to a loopback listener with serve, then closes it, until the
// test ends, and returns the listener's address.
func fakeServer(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); serve(c) }()
		}
	}()
	return ln.Addr().String()
}
