package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func init() { commands["keygen"] = keygenCommand{} }

// keygenCommand is `paynotify keygen`: it makes an RSA-2048 app key pair for Alipay.
type keygenCommand struct{}

func (keygenCommand) Usage() string {
	return `Usage: paynotify keygen [--out DIR]

Makes an RSA-2048 app key pair for Alipay in DIR (default: the current directory), files 0600:
  app_private_key.pem  PKCS#8 PEM: the app private key (app_private_key_file)
  app_private_key.txt  the same as one line of base64 ("PKCS8 (JAVA适用)")
  app_public_key.pem   PKIX PEM: the app public key
  app_public_key.txt   the same as one line of base64: paste it into the Alipay console
Existing files are never overwritten. The app public key is not the Alipay public key: after you
upload yours, the console shows Alipay's, which is what verifies notifications.
`
}

func (cmd keygenCommand) Run(ctx context.Context, m *Main, args []string) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	out := fs.String("out", ".", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(m.Stdout, cmd.Usage())
			return nil
		}
		return usagef("paynotify keygen --out keys", "keygen: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("paynotify keygen --out keys", "keygen: unexpected argument %q", fs.Arg(0))
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return configErrorf("keygen: %w", err)
	}
	names := []string{"app_private_key.pem", "app_private_key.txt", "app_public_key.pem", "app_public_key.txt"}
	for _, n := range names {
		if _, err := os.Lstat(filepath.Join(*out, n)); err == nil {
			return configErrorf("keygen: %s already exists: not overwriting it", filepath.Join(*out, n))
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	contents := [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}),
		[]byte(base64.StdEncoding.EncodeToString(priv) + "\n"),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}),
		[]byte(base64.StdEncoding.EncodeToString(pub) + "\n"),
	}
	for i, n := range names {
		if err := writeNew(filepath.Join(*out, n), contents[i]); err != nil {
			return configErrorf("keygen: %w", err)
		}
		fmt.Fprintf(m.Stdout, "wrote %s\n", filepath.Join(*out, n))
	}
	fmt.Fprintln(m.Stdout, "Upload app_public_key.txt in the Alipay console (接口加签方式: 公钥), then save the Alipay public key it shows.")
	return nil
}

// writeNew creates path with mode 0600, failing if it exists.
func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
