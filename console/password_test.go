package console

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestPassword(t *testing.T) {
	t.Run("OKArgon2id", func(t *testing.T) {
		h, err := HashPassword("correct horse")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") || strings.Contains(h, "correct") {
			t.Fatalf("hash %q", h)
		}
		if err := CheckPasswordHash(h); err != nil {
			t.Fatal(err)
		}
		if !VerifyPassword(h, "correct horse") || VerifyPassword(h, "correct horse ") || VerifyPassword(h, "") {
			t.Error("argon2id verification is wrong")
		}
		h2, _ := HashPassword("correct horse")
		if h2 == h {
			t.Error("two hashes of one password are equal: no random salt")
		}
	})
	t.Run("OKArgon2idOtherParams", func(t *testing.T) {
		// A hash of "password" with salt "somesalt" (m=65536,t=2,p=1), the reference argon2
		// command's test vector (argon2 somesalt -id -t 2 -m 16 -p 1 -l 32).
		const ref = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
		if !VerifyPassword(ref, "password") || VerifyPassword(ref, "Password") {
			t.Error("the reference argon2id vector does not verify")
		}
	})
	t.Run("OKBcrypt", func(t *testing.T) {
		h, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPasswordHash(string(h)); err != nil {
			t.Fatal(err)
		}
		if !VerifyPassword(string(h), "s3cret") || VerifyPassword(string(h), "s3cre") {
			t.Error("bcrypt verification is wrong")
		}
	})
	t.Run("ErrMalformed", func(t *testing.T) {
		for _, h := range []string{"", "plain", "$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			"$argon2id$v=16$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			"$argon2id$v=19$m=99999999,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			"$argon2id$v=19$m=65536,t=2$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			"$argon2id$v=19$m=65536,t=2,p=1$!!$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
			"$2b$10$short"} {
			if CheckPasswordHash(h) == nil {
				t.Errorf("CheckPasswordHash(%q) = nil", h)
			}
			if VerifyPassword(h, "password") {
				t.Errorf("VerifyPassword(%q) = true", h)
			}
		}
	})
}
