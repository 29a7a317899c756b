package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paynotify/paynotify/alipay"
)

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	t.Run("OK", func(t *testing.T) {
		code, out, errs := runMain(t, "", "keygen", "--out", dir)
		if code != exitOK || !strings.Contains(out, "app_public_key.txt") {
			t.Fatalf("code %d %q %q", code, out, errs)
		}
		if strings.Contains(out, "MII") {
			t.Fatal("key material on stdout")
		}
		read := func(name string) []byte {
			t.Helper()
			p := filepath.Join(dir, name)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Fatalf("%s mode %v", name, st.Mode())
			}
			b, _ := os.ReadFile(p)
			return b
		}
		privPEM, err := alipay.ParsePrivateKey(read("app_private_key.pem"))
		if err != nil || privPEM.N.BitLen() != 2048 {
			t.Fatal(err)
		}
		privLine, err := alipay.ParsePrivateKey(read("app_private_key.txt"))
		if err != nil || !privLine.Equal(privPEM) {
			t.Fatal(err)
		}
		for _, n := range []string{"app_public_key.pem", "app_public_key.txt"} {
			pub, err := alipay.ParsePublicKey(read(n))
			if err != nil || !pub.Equal(&privPEM.PublicKey) {
				t.Fatal(n, err)
			}
		}
		if line := read("app_public_key.txt"); strings.Count(string(line), "\n") != 1 || !strings.HasPrefix(string(line), "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA") {
			t.Fatalf("one-line public key %q", line)
		}
	})
	t.Run("ErrExists", func(t *testing.T) {
		before, _ := os.ReadFile(filepath.Join(dir, "app_private_key.pem"))
		code, _, errs := runMain(t, "", "keygen", "--out", dir)
		after, _ := os.ReadFile(filepath.Join(dir, "app_private_key.pem"))
		if code != exitUsage || !strings.Contains(errs, "already exists") || string(before) != string(after) {
			t.Fatalf("code %d %q", code, errs)
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		if code, _, _ := runMain(t, "", "keygen", "extra"); code != exitUsage {
			t.Fatalf("code %d", code)
		}
	})
}
