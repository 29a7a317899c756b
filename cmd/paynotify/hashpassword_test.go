package main

import (
	"strings"
	"testing"

	"github.com/paynotify/paynotify/console"
)

// TestHashPassword: from a pipe, one line in, only the hash out (one line); the hash verifies the
// password and goes into the config's console block.
func TestHashPassword(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		code, out, errs := runMain(t, "s3cret passphrase\nignored second line\n", "hash-password")
		if code != exitOK || errs != "" {
			t.Fatalf("exit %d, stderr %q", code, errs)
		}
		if strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "$argon2id$v=19$") || strings.Contains(out, "s3cret") {
			t.Fatalf("stdout %q: want one line, the argon2id hash only", out)
		}
		hash := strings.TrimSuffix(out, "\n")
		if !console.VerifyPassword(hash, "s3cret passphrase") || console.VerifyPassword(hash, "s3cret passphrase\n") {
			t.Error("the printed hash does not verify the line read (without its newline)")
		}
		c, err := ParseConfig([]byte(validConfig+"console:\n  admin_password_hash: '"+hash+"'\n"), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
		if err != nil || c.Console.AdminPasswordHash != hash {
			t.Fatalf("config with the hash: %v", err)
		}
	})
	t.Run("OKNoTrailingNewline", func(t *testing.T) {
		code, out, _ := runMain(t, "correct horse", "hash-password")
		if code != exitOK || !console.VerifyPassword(strings.TrimSpace(out), "correct horse") {
			t.Fatalf("exit %d, %q", code, out)
		}
	})
	t.Run("ErrShort", func(t *testing.T) {
		// 11 characters (two of them of two bytes each) is too short; 12 of one byte each is not.
		code, out, errs := runMain(t, "éé345678901\n", "hash-password")
		if code != exitUsage || out != "" || !strings.Contains(errs, "11 characters, fewer than 12") || strings.Contains(errs, "345678901") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
		if code, out, _ := runMain(t, "123456789012\n", "hash-password"); code != exitOK || !strings.HasPrefix(out, "$argon2id$") {
			t.Fatalf("12 characters: exit %d, %q", code, out)
		}
	})
	t.Run("ErrEmpty", func(t *testing.T) {
		code, out, errs := runMain(t, "\n", "hash-password")
		if code != exitUsage || out != "" || !strings.Contains(errs, "empty") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("ErrArgument", func(t *testing.T) {
		code, out, errs := runMain(t, "x\n", "hash-password", "hunter2")
		if code != exitUsage || out != "" || strings.Contains(errs, "hunter2") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
		}
	})
	t.Run("OKHelp", func(t *testing.T) {
		if code, out, _ := runMain(t, "", "hash-password", "--help"); code != exitOK || !strings.Contains(out, "Usage: paynotify hash-password") {
			t.Fatalf("exit %d, %q", code, out)
		}
	})
	t.Run("ErrConfigBadHash", func(t *testing.T) {
		_, err := ParseConfig([]byte(validConfig+"console:\n  admin_password_hash: 'plaintext-password'\n"), env(map[string]string{"TOKEN": "0123456789abcdef0123"}))
		if err == nil || !strings.Contains(err.Error(), "console.admin_password_hash") || strings.Contains(err.Error(), "plaintext-password") {
			t.Fatalf("err = %v", err)
		}
	})
}
