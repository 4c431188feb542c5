package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// The algorithms of each key type.
var (
	hmacAlgs    = []string{"HS256", "HS384", "HS512"}
	rsaAlgs     = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	ed25519Algs = []string{"EdDSA"}
	// asymmetricAlgs are the algorithms a JWKS may allow: every key in it
	// narrows them further.
	asymmetricAlgs = []string{
		"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
		"ES256", "ES384", "ES512", "EdDSA",
	}
)

// minRSABits is the smallest RSA modulus accepted, as RFC 7518 section 3.3
// requires.
const minRSABits = 2048

// verifyKey is a public key or HMAC secret with the algorithms it may
// verify.
type verifyKey struct {
	key  any // []byte, *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
	algs []string
}

// fits reports whether the signing method m may be used with k: its
// algorithm must be one of k's, and its implementation must be the one for
// k's key type (and, for ECDSA, for k's curve). This repeats the parser's
// check of the algorithm against the key type, in case a method was
// registered under another name.
func (k *verifyKey) fits(m jwt.SigningMethod) bool {
	if m == nil || !slices.Contains(k.algs, m.Alg()) {
		return false
	}
	switch key := k.key.(type) {
	case []byte:
		_, ok := m.(*jwt.SigningMethodHMAC)
		return ok
	case *rsa.PublicKey:
		switch m.(type) {
		case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
			return true
		}
		return false
	case *ecdsa.PublicKey:
		em, ok := m.(*jwt.SigningMethodECDSA)
		return ok && em.CurveBits == key.Curve.Params().BitSize && ecAlg(key.Curve) == em.Alg()
	case ed25519.PublicKey:
		_, ok := m.(*jwt.SigningMethodEd25519)
		return ok
	}
	return false
}

// ecAlg returns the one algorithm for a curve, or "" for a curve JWS does
// not use.
func ecAlg(c elliptic.Curve) string {
	switch c {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// publicKey returns the verifyKey for a parsed public key.
func publicKey(pub any) (*verifyKey, error) {
	switch key := pub.(type) {
	case *rsa.PublicKey:
		if key.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("RSA key has %d bits, fewer than %d", key.N.BitLen(), minRSABits)
		}
		return &verifyKey{key: key, algs: rsaAlgs}, nil
	case *ecdsa.PublicKey:
		alg := ecAlg(key.Curve)
		if alg == "" {
			return nil, fmt.Errorf("EC curve %s is not P-256, P-384 or P-521", key.Curve.Params().Name)
		}
		return &verifyKey{key: key, algs: []string{alg}}, nil
	case ed25519.PublicKey:
		return &verifyKey{key: key, algs: ed25519Algs}, nil
	}
	return nil, fmt.Errorf("key type %T is not RSA, EC or Ed25519", pub)
}

// parsePEM returns the first public key in data: a "PUBLIC KEY" block
// (PKIX), an "RSA PUBLIC KEY" block (PKCS #1) or a "CERTIFICATE" block.
// Other blocks are skipped, except private keys, which are refused so that
// a private key is not mistaken for configuration that may be shared.
func parsePEM(data []byte) (*verifyKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("PublicKeyPEM holds no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block")
		}
		var pub any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				pub = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("PublicKeyPEM holds a private key; configure the public key only")
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("PublicKeyPEM: %s block: %w", block.Type, err)
		}
		k, err := publicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("PublicKeyPEM: %w", err)
		}
		return k, nil
	}
}
