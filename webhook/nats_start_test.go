package webhook

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestNATSWrongPassword: a NATS server that answers, refusing the configured credentials, is not
// "a server that does not answer": OpenNATS is an error ("Authorization Violation"), serve does
// not start, as before 072f7ea, which had serve start and say "not connected ... (retried in the
// background)" though nats.go gives up after a repeated auth error (a reviewer's finding).
func TestNATSWrongPassword(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	srv := exec.Command("/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", t.TempDir(), "--user", "user", "--pass", "right")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	for i := 0; i < 100; i++ { // wait for the listener
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = OpenNATS(ctx, NATSConfig{URL: fmt.Sprintf("nats://user:wrong@127.0.0.1:%d", port), Stream: "S", SubjectPrefix: "p"})
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
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
						if _, err := readFull(r, buf); err != nil {
							return
						}
					}
				}
			}(c)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	n, err := OpenNATS(ctx, NATSConfig{URL: "nats://" + ln.Addr().String(), Stream: "S", SubjectPrefix: "p"})
	if err != nil {
		t.Fatalf("a NATS server whose JetStream does not answer: OpenNATS: %v; want the sink not ready, serve going on", err)
	}
	defer n.Close()
	if n.Ready() || n.StartError() == nil {
		t.Errorf("Ready %v, StartError %v; want not ready, saying why", n.Ready(), n.StartError())
	}
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
