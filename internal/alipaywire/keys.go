package alipaywire

import (
	"bytes"
	"encoding/base64"
	"encoding/pem"
	"errors"
)

// KeyDER returns the DER bytes of a key given as PEM (any block type) or as the one-line base64
// form the Alipay key tools and merchant portals hand out (whitespace anywhere is ignored). Errors
// never contain key material.
func KeyDER(b []byte) ([]byte, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return nil, errors.New("empty key")
	}
	if bytes.HasPrefix(b, []byte("-----BEGIN")) {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, errors.New("bad PEM")
		}
		if len(blk.Headers) != 0 {
			return nil, errors.New("encrypted or annotated PEM is not supported")
		}
		return blk.Bytes, nil
	}
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			clean = append(clean, c)
		}
	}
	der := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(der, clean)
	if err != nil {
		return nil, errors.New("neither PEM nor base64")
	}
	return der[:n], nil
}
