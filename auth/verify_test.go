package auth

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// keyCase is a way to configure a Verifier and the matching signing key.
type keyCase struct {
	name    string
	cfg     func(t *testing.T) Config
	signKey func() any
	methods []jwt.SigningMethod
}

func keyCases() []keyCase {
	rsaMethods := []jwt.SigningMethod{
		jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512,
		jwt.SigningMethodPS256, jwt.SigningMethodPS384, jwt.SigningMethodPS512,
	}
	return []keyCase{
		{
			name:    "HMAC",
			cfg:     func(*testing.T) Config { return Config{HMACSecret: hmacKey} },
			signKey: func() any { return hmacKey },
			methods: []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512},
		},
		{
			name:    "RSA-PKIX",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: pkixPEM(t, &rsaKey().PublicKey)} },
			signKey: func() any { return rsaKey() },
			methods: rsaMethods,
		},
		{
			name:    "RSA-PKCS1",
			cfg:     func(*testing.T) Config { return Config{PublicKeyPEM: pkcs1PEM(&rsaKey().PublicKey)} },
			signKey: func() any { return rsaKey() },
			methods: rsaMethods,
		},
		{
			name:    "RSA-certificate",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: certPEM(t)} },
			signKey: func() any { return rsaKey() },
			methods: rsaMethods,
		},
		{
			name:    "P-256",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: pkixPEM(t, &p256Key().PublicKey)} },
			signKey: func() any { return p256Key() },
			methods: []jwt.SigningMethod{jwt.SigningMethodES256},
		},
		{
			name:    "P-384",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: pkixPEM(t, &p384Key().PublicKey)} },
			signKey: func() any { return p384Key() },
			methods: []jwt.SigningMethod{jwt.SigningMethodES384},
		},
		{
			name:    "P-521",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: pkixPEM(t, &p521Key().PublicKey)} },
			signKey: func() any { return p521Key() },
			methods: []jwt.SigningMethod{jwt.SigningMethodES512},
		},
		{
			name:    "Ed25519",
			cfg:     func(t *testing.T) Config { return Config{PublicKeyPEM: pkixPEM(t, edKey().Public())} },
			signKey: func() any { return edKey() },
			methods: []jwt.SigningMethod{jwt.SigningMethodEdDSA},
		},
	}
}

// certPEM returns a self-signed certificate for rsaKey.
func certPEM(t *testing.T) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "switchboard test issuer"},
		NotBefore:    testEpoch.Add(-time.Hour),
		NotAfter:     testEpoch.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &rsaKey().PublicKey, rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

var allMethods = []jwt.SigningMethod{
	jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512,
	jwt.SigningMethodRS256, jwt.SigningMethodRS384, jwt.SigningMethodRS512,
	jwt.SigningMethodPS256, jwt.SigningMethodPS384, jwt.SigningMethodPS512,
	jwt.SigningMethodES256, jwt.SigningMethodES384, jwt.SigningMethodES512,
	jwt.SigningMethodEdDSA,
}

// TestEveryAlgorithm verifies a token of every algorithm with every way of
// configuring its key.
func TestEveryAlgorithm(t *testing.T) {
	seen := map[string]bool{}
	for _, kc := range keyCases() {
		t.Run(kc.name, func(t *testing.T) {
			v := newVerifier(t, kc.cfg(t))
			for _, m := range kc.methods {
				seen[m.Alg()] = true
				claims := with("channels", []string{"chat:*"}, "publish", []string{"chat:lobby"},
					"info", map[string]any{"name": "Alice"})
				tok := sign(t, m, kc.signKey(), claims, nil)
				c, err := v.Verify(tok)
				if err != nil {
					t.Fatalf("%s: %v", m.Alg(), err)
				}
				if c.Subject != "alice" || !c.Expires.Equal(testEpoch.Add(time.Hour)) ||
					!c.IssuedAt.Equal(testEpoch.Add(-time.Minute)) || !c.NotBefore.IsZero() {
					t.Errorf("%s: claims %+v", m.Alg(), c)
				}
				if !slices.Equal(c.Channels, []string{"chat:*"}) || !slices.Equal(c.Publish, []string{"chat:lobby"}) ||
					string(c.Info) != `{"name":"Alice"}` || c.Channel != "" {
					t.Errorf("%s: claims %+v, info %s", m.Alg(), c, c.Info)
				}
			}
		})
	}
	for _, m := range allMethods {
		if !seen[m.Alg()] {
			t.Errorf("algorithm %s not tested", m.Alg())
		}
	}
}

// TestAlgorithmConfusion presents every algorithm to every key type: only
// the algorithms of the key may pass, everything else is a signature
// failure. Tokens are signed with a key of the right type for the
// algorithm, so that only the algorithm check can refuse them.
func TestAlgorithmConfusion(t *testing.T) {
	keyFor := map[string]any{
		"HS256": hmacKey, "HS384": hmacKey, "HS512": hmacKey,
		"RS256": rsaKey(), "RS384": rsaKey(), "RS512": rsaKey(),
		"PS256": rsaKey(), "PS384": rsaKey(), "PS512": rsaKey(),
		"ES256": p256Key(), "ES384": p384Key(), "ES512": p521Key(),
		"EdDSA": edKey(),
	}
	for _, kc := range keyCases() {
		t.Run(kc.name, func(t *testing.T) {
			v := newVerifier(t, kc.cfg(t))
			for _, m := range allMethods {
				tok := sign(t, m, keyFor[m.Alg()], validClaims(), nil)
				c, err := v.Verify(tok)
				if slices.Contains(kc.methods, m) {
					if err != nil {
						t.Errorf("%s: %v", m.Alg(), err)
					}
					continue
				}
				wantReason(t, tok, c, err, ReasonSignature)
				// The parser's list of valid methods refused it, before
				// any key function ran.
				if !errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable) {
					t.Errorf("%s: %v was not refused by the parser's valid methods", m.Alg(), err)
				}
			}
		})
	}
}

func TestRejected(t *testing.T) {
	hmacV := newVerifier(t, Config{HMACSecret: hmacKey})
	rsaPEM := pkixPEM(t, &rsaKey().PublicKey)
	rsaV := newVerifier(t, Config{PublicKeyPEM: rsaPEM})
	p256V := newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, &p256Key().PublicKey)})
	edV := newVerifier(t, Config{PublicKeyPEM: pkixPEM(t, edKey().Public())})
	issV := newVerifier(t, Config{HMACSecret: hmacKey, Issuer: "https://issuer.example", Audience: "switchboard"})

	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, hmacKey, c, nil) }
	hsHeader := `{"alg":"HS256","typ":"JWT"}`
	tooLong := hs(with("info", map[string]any{"pad": strings.Repeat("x", maxTokenLen)}))

	cases := []struct {
		name   string
		v      *Verifier
		token  string
		reason string
	}{
		{"expired", hmacV, hs(with("exp", testEpoch.Add(-31*time.Second).Unix())), ReasonExpired},
		{"expired long ago", hmacV, hs(with("exp", testEpoch.Add(-24*time.Hour).Unix())), ReasonExpired},
		{"nbf in the future", hmacV, hs(with("nbf", testEpoch.Add(time.Minute).Unix())), ReasonNotYetValid},
		{"iat in the future", hmacV, hs(with("iat", testEpoch.Add(time.Hour).Unix())), ReasonNotYetValid},

		{"HMAC wrong key", hmacV, sign(t, jwt.SigningMethodHS256, hmacKey2, validClaims(), nil), ReasonSignature},
		{"RSA wrong key", rsaV, sign(t, jwt.SigningMethodRS256, rsaKey2(), validClaims(), nil), ReasonSignature},
		{"EC wrong key", p256V, sign(t, jwt.SigningMethodES256, p256Key2(), validClaims(), nil), ReasonSignature},
		{"Ed25519 wrong key", edV, sign(t, jwt.SigningMethodEdDSA, edKey2(), validClaims(), nil), ReasonSignature},
		{"alg none to HMAC", hmacV, raw(`{"alg":"none","typ":"JWT"}`, payloadJSON(t, validClaims()), nil), ReasonSignature},
		{"alg none to RSA", rsaV, raw(`{"alg":"none","typ":"JWT"}`, payloadJSON(t, validClaims()), nil), ReasonSignature},
		{"alg None to RSA", rsaV, raw(`{"alg":"None"}`, payloadJSON(t, validClaims()), nil), ReasonSignature},
		{"HS256 with the RSA key's PEM as secret", rsaV, sign(t, jwt.SigningMethodHS256, rsaPEM, validClaims(), nil), ReasonSignature},
		{"RS256 to HMAC", hmacV, sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), nil), ReasonSignature},
		{"ES384 to P-256", p256V, sign(t, jwt.SigningMethodES384, p384Key(), validClaims(), nil), ReasonSignature},
		{"unknown alg", hmacV, raw(`{"alg":"HS1024"}`, payloadJSON(t, validClaims()), []byte("sig")), ReasonSignature},
		{"no alg", hmacV, raw(`{"typ":"JWT"}`, payloadJSON(t, validClaims()), []byte("sig")), ReasonSignature},
		{"tampered payload", hmacV, tamper(t, hs(validClaims()), with("sub", "mallory")), ReasonSignature},

		{"empty", hmacV, "", ReasonMalformed},
		{"one segment", hmacV, "abc", ReasonMalformed},
		{"not base64 JSON", hmacV, "a.b.c", ReasonMalformed},
		{"four segments", hmacV, hs(validClaims()) + ".x", ReasonMalformed},
		{"bad base64 header", hmacV, "!!!." + strings.SplitN(hs(validClaims()), ".", 2)[1], ReasonMalformed},
		{"bad base64 payload", hmacV, "eyJhbGciOiJIUzI1NiJ9.%%%.c2ln", ReasonMalformed},
		{"bad base64 signature", hmacV, hs(validClaims()) + "*", ReasonMalformed},
		{"payload not JSON", hmacV, raw(hsHeader, "not json", []byte("sig")), ReasonMalformed},
		{"payload an array", hmacV, raw(hsHeader, "[1,2]", []byte("sig")), ReasonMalformed},
		{"header not JSON", hmacV, raw("{", payloadJSON(t, validClaims()), []byte("sig")), ReasonMalformed},
		{"channels a string", hmacV, hs(with("channels", "chat:*")), ReasonMalformed},
		{"channels of numbers", hmacV, hs(with("channels", []int{1, 2})), ReasonMalformed},
		{"publish an object", hmacV, hs(with("publish", map[string]any{})), ReasonMalformed},
		{"info an array", hmacV, hs(with("info", []string{"a"})), ReasonMalformed},
		{"info a string", hmacV, hs(with("info", "hello")), ReasonMalformed},
		{"sub a number", hmacV, hs(with("sub", 42)), ReasonMalformed},
		{"exp a string", hmacV, hs(with("exp", "tomorrow")), ReasonMalformed},
		{"channel a number", hmacV, hs(with("channel", 7)), ReasonMalformed},
		{"critical header", hmacV, sign(t, jwt.SigningMethodHS256, hmacKey, validClaims(), map[string]any{"crit": []string{"exp"}}), ReasonMalformed},
		{"too long", hmacV, tooLong, ReasonMalformed},

		{"missing sub", hmacV, hs(with("sub", nil)), ReasonClaims},
		{"empty sub", hmacV, hs(with("sub", "")), ReasonClaims},
		{"null sub", hmacV, hs(with("sub", json.RawMessage("null"))), ReasonClaims},
		{"sub in capitals", hmacV, hs(with("sub", nil, "SUB", "alice")), ReasonClaims},
		{"missing exp", hmacV, hs(with("exp", nil)), ReasonClaims},
		{"wrong issuer", issV, hs(with("iss", "https://other.example", "aud", "switchboard")), ReasonClaims},
		{"missing issuer", issV, hs(with("aud", "switchboard")), ReasonClaims},
		{"wrong audience", issV, hs(with("iss", "https://issuer.example", "aud", []string{"other", "more"})), ReasonClaims},
		{"missing audience", issV, hs(with("iss", "https://issuer.example")), ReasonClaims},
		{"missing sub and expired", hmacV, hs(with("sub", nil, "exp", testEpoch.Add(-time.Hour).Unix())), ReasonClaims},
		{"expired and not yet valid", hmacV, hs(with("exp", testEpoch.Add(-time.Hour).Unix(), "nbf", testEpoch.Add(time.Hour).Unix())), ReasonExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.token)
			wantReason(t, tc.token, c, err, tc.reason)
			c, err = tc.v.VerifySubscription(tc.token)
			wantReason(t, tc.token, c, err, tc.reason)
		})
	}
}

// tamper replaces the payload of a signed token.
func tamper(t *testing.T, token string, claims jwt.MapClaims) string {
	parts := strings.Split(token, ".")
	forged := strings.Split(raw("{}", payloadJSON(t, claims), nil), ".")
	return parts[0] + "." + forged[1] + "." + parts[2]
}

func TestAccepted(t *testing.T) {
	hmacV := newVerifier(t, Config{HMACSecret: hmacKey})
	issV := newVerifier(t, Config{HMACSecret: hmacKey, Issuer: "https://issuer.example", Audience: "switchboard"})
	strictV := newVerifier(t, Config{HMACSecret: hmacKey, Leeway: -1})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, hmacKey, c, nil) }

	cases := []struct {
		name  string
		v     *Verifier
		token string
	}{
		{"expired within leeway", hmacV, hs(with("exp", testEpoch.Add(-10*time.Second).Unix()))},
		{"nbf within leeway", hmacV, hs(with("nbf", testEpoch.Add(10*time.Second).Unix()))},
		{"iat within leeway", hmacV, hs(with("iat", testEpoch.Add(10*time.Second).Unix()))},
		{"nbf past", hmacV, hs(with("nbf", testEpoch.Add(-time.Hour).Unix()))},
		{"no iat", hmacV, hs(with("iat", nil))},
		{"fractional exp", hmacV, hs(with("exp", float64(testEpoch.Unix())+0.5))},
		{"null optional claims", hmacV, hs(with("channels", json.RawMessage("null"), "info", json.RawMessage("null"), "nbf", json.RawMessage("null")))},
		{"issuer and audience string", issV, hs(with("iss", "https://issuer.example", "aud", "switchboard"))},
		{"issuer and audience list", issV, hs(with("iss", "https://issuer.example", "aud", []string{"other", "switchboard"}))},
		{"no leeway", strictV, hs(with("exp", testEpoch.Add(time.Second).Unix(), "iat", testEpoch.Unix()))},
		{"kid ignored without JWKS", hmacV, sign(t, jwt.SigningMethodHS256, hmacKey, validClaims(), map[string]any{"kid": "whatever"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := tc.v.Verify(tc.token); err != nil || c.Subject != "alice" {
				t.Fatalf("Verify: %+v, %v", c, err)
			}
		})
	}

	// The leeway is really gone when Leeway is negative, and really 30s by
	// default.
	for _, tc := range []struct {
		v      *Verifier
		skew   time.Duration
		reason string
	}{
		{strictV, -time.Second, ReasonExpired},
		{hmacV, -29 * time.Second, ""},
		{hmacV, -30 * time.Second, ReasonExpired},
	} {
		tok := hs(with("exp", testEpoch.Add(tc.skew).Unix()))
		c, err := tc.v.Verify(tok)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("exp %v from now: %v", tc.skew, err)
			}
			continue
		}
		wantReason(t, tok, c, err, tc.reason)
	}
}

func TestVerifySubscription(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: hmacKey})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, hmacKey, c, nil) }

	tok := hs(with("channel", "chat:lobby"))
	c, err := v.VerifySubscription(tok)
	if err != nil || c.Channel != "chat:lobby" || c.Subject != "alice" {
		t.Fatalf("VerifySubscription: %+v, %v", c, err)
	}
	// A subscription token is also a valid token for Verify.
	if c, err := v.Verify(tok); err != nil || c.Channel != "chat:lobby" {
		t.Fatalf("Verify: %+v, %v", c, err)
	}

	for _, tok := range []string{hs(validClaims()), hs(with("channel", "")), hs(with("channel", nil, "Channel", "x"))} {
		c, err := v.VerifySubscription(tok)
		wantReason(t, tok, c, err, ReasonClaims)
		if c, err := v.Verify(tok); err != nil {
			t.Errorf("Verify of a connection token: %+v, %v", c, err)
		}
	}
}

// TestErrorText checks that a TokenError names its reason, wraps the
// library's error and quotes nothing from the token, even when the token's
// header carries text of the attacker's choice.
func TestErrorText(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: hmacKey})
	tok := raw(`{"alg":"EVIL-ALGORITHM-NAME","kid":"EVIL-KID"}`, payloadJSON(t, validClaims()), []byte("sig"))
	c, err := v.Verify(tok)
	wantReason(t, tok, c, err, ReasonSignature)
	if strings.Contains(err.Error(), "EVIL") {
		t.Errorf("error text %q quotes the token", err)
	}

	tok = raw(`{"alg":"HS256"}`, `{"sub":"alice","exp":"EVIL-EXP"}`, []byte("sig"))
	_, err = v.Verify(tok)
	if strings.Contains(err.Error(), "EVIL") || !strings.Contains(err.Error(), "exp") {
		t.Errorf("error text %q", err)
	}

	tok = sign(t, jwt.SigningMethodHS256, hmacKey, with("exp", testEpoch.Add(-time.Hour).Unix()), nil)
	_, err = v.Verify(tok)
	if !errors.Is(err, jwt.ErrTokenExpired) {
		t.Errorf("%v does not wrap jwt.ErrTokenExpired", err)
	}
	if got, want := err.Error(), "auth: token expired: exp is past"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var te *TokenError
	if !errors.As(err, &te) || te.Unwrap() != te.Err || te.Err == nil {
		t.Errorf("Unwrap of %v", err)
	}
	if got := (&TokenError{Reason: ReasonClaims}).Error(); got != "auth: invalid claims" {
		t.Errorf("Error() without Err = %q", got)
	}
}

func TestNewConfigErrors(t *testing.T) {
	ecPrivDER, err := x509.MarshalECPrivateKey(p256Key())
	if err != nil {
		t.Fatal(err)
	}
	p224 := pkixPEM(t, &mustEC(elliptic.P224()).PublicKey)
	cases := []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{}},
		{"empty secret", Config{HMACSecret: []byte{}}},
		{"two keys", Config{HMACSecret: hmacKey, JWKSURL: "https://issuer.example/jwks"}},
		{"three keys", Config{HMACSecret: hmacKey, PublicKeyPEM: pkcs1PEM(&rsaKey().PublicKey), JWKSURL: "https://x.example"}},
		{"short secret", Config{HMACSecret: []byte("short")}},
		{"not PEM", Config{PublicKeyPEM: []byte("hello")}},
		{"private key PEM", Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecPrivDER})}},
		{"garbage PEM", Config{PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})}},
		{"small RSA", Config{PublicKeyPEM: pkcs1PEM(&mustRSA(1024).PublicKey)}},
		{"P-224", Config{PublicKeyPEM: p224}},
		{"JWKS not a URL", Config{JWKSURL: "::"}},
		{"JWKS not http", Config{JWKSURL: "ftp://issuer.example/jwks"}},
		{"JWKS no host", Config{JWKSURL: "https:///jwks"}},
		{"negative refresh", Config{JWKSURL: "https://issuer.example/jwks", JWKSRefresh: -time.Second}},
		{"negative timeout", Config{JWKSURL: "https://issuer.example/jwks", JWKSTimeout: -time.Second}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := New(tc.cfg)
			if !errors.Is(err, ErrConfig) || v != nil {
				t.Fatalf("New = %v, %v; want an error wrapping ErrConfig", v, err)
			}
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("error text %q", err)
			}
		})
	}

	// A PEM file may hold other blocks before the key.
	withParams := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8}}), pkixPEM(t, &p256Key().PublicKey)...)
	v := newVerifier(t, Config{PublicKeyPEM: withParams})
	tok := sign(t, jwt.SigningMethodES256, p256Key(), validClaims(), nil)
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("PEM after an EC PARAMETERS block: %v", err)
	}
}

func TestSign(t *testing.T) {
	v := newVerifier(t, Config{HMACSecret: hmacKey})
	in := Claims{
		Subject:   "bob",
		Expires:   testEpoch.Add(time.Hour),
		NotBefore: testEpoch.Add(-time.Hour),
		IssuedAt:  testEpoch.Add(-time.Minute),
		Channels:  []string{"news", "chat:*"},
		Publish:   []string{"chat:lobby"},
		Info:      []byte(`{"name":"Bob"}`),
		Channel:   "news",
	}
	for _, alg := range []string{"HS256", "HS384", "HS512"} {
		tok, err := Sign(hmacKey, alg, in)
		if err != nil {
			t.Fatalf("Sign %s: %v", alg, err)
		}
		out, err := v.VerifySubscription(tok)
		if err != nil {
			t.Fatalf("VerifySubscription of a %s token: %v", alg, err)
		}
		if out.Subject != in.Subject || !out.Expires.Equal(in.Expires) || !out.NotBefore.Equal(in.NotBefore) ||
			!out.IssuedAt.Equal(in.IssuedAt) || !slices.Equal(out.Channels, in.Channels) ||
			!slices.Equal(out.Publish, in.Publish) || string(out.Info) != string(in.Info) || out.Channel != in.Channel {
			t.Errorf("%s: signed %+v, verified %+v", alg, in, out)
		}
	}

	// Zero fields are left out, so the token fails as it should.
	tok, err := Sign(hmacKey, "HS256", Claims{Subject: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	wantReason(t, tok, c, err, ReasonClaims)

	for _, tc := range []struct {
		name   string
		secret []byte
		alg    string
		c      Claims
	}{
		{"RS256", hmacKey, "RS256", in},
		{"none", hmacKey, "none", in},
		{"lower case", hmacKey, "hs256", in},
		{"short secret", []byte("short"), "HS256", in},
		{"info an array", hmacKey, "HS256", Claims{Subject: "bob", Info: []byte(`[1]`)}},
		{"info not JSON", hmacKey, "HS256", Claims{Subject: "bob", Info: []byte(`{`)}},
	} {
		if tok, err := Sign(tc.secret, tc.alg, tc.c); err == nil || tok != "" || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("%s: Sign = %q, %v; want an auth error", tc.name, tok, err)
		}
	}
}

// TestKeyFits checks the key functions' own check of the algorithm against
// the key type, which the parser's list of valid methods normally hides.
func TestKeyFits(t *testing.T) {
	for _, kc := range keyCases() {
		v := newVerifier(t, kc.cfg(t))
		for _, m := range allMethods {
			tok := &jwt.Token{Method: m, Header: map[string]any{"alg": m.Alg()}}
			key, err := v.staticKey(tok)
			if slices.Contains(kc.methods, m) {
				if err != nil || key == nil {
					t.Errorf("%s, %s: %v", kc.name, m.Alg(), err)
				}
			} else if !errors.Is(err, errAlgorithm) || key != nil {
				t.Errorf("%s, %s: key %T, error %v; want errAlgorithm", kc.name, m.Alg(), key, err)
			}
		}
	}

	// A key whose list of algorithms were wrong still refuses a method of
	// another key type or curve.
	for _, tc := range []struct {
		key any
		alg string
		m   jwt.SigningMethod
	}{
		{&p256Key().PublicKey, "ES384", jwt.SigningMethodES384},
		{&p521Key().PublicKey, "ES256", jwt.SigningMethodES256},
		{&rsaKey().PublicKey, "HS256", jwt.SigningMethodHS256},
		{&rsaKey().PublicKey, "ES256", jwt.SigningMethodES256},
		{hmacKey, "RS256", jwt.SigningMethodRS256},
		{edKey().Public(), "ES256", jwt.SigningMethodES256},
		{&p256Key().PublicKey, "EdDSA", jwt.SigningMethodEdDSA},
		{&p256Key().PublicKey, "none", jwt.SigningMethodNone},
		{"a string key", "HS256", jwt.SigningMethodHS256},
	} {
		k := &verifyKey{key: tc.key, algs: []string{tc.alg}}
		if k.fits(tc.m) {
			t.Errorf("a %T key fits %s", tc.key, tc.m.Alg())
		}
	}
	if (&verifyKey{key: hmacKey, algs: hmacAlgs}).fits(nil) {
		t.Error("a nil method fits")
	}
}
