package auth

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var reasons = []string{ReasonExpired, ReasonSignature, ReasonNotYetValid, ReasonMalformed, ReasonClaims}

// FuzzVerify feeds arbitrary strings to Verify and VerifySubscription of an
// HMAC and an RSA verifier: they must not panic, and must return either
// claims with a subject or a *TokenError with one of the reasons.
func FuzzVerify(f *testing.F) {
	hmacV := newVerifier(f, Config{HMACSecret: hmacKey})
	rsaV := newVerifier(f, Config{PublicKeyPEM: pkixPEM(f, &rsaKey().PublicKey)})

	f.Add("")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add(raw(`{"alg":"none"}`, `{"sub":"a","exp":1e30}`, nil))
	f.Add(raw(`{"alg":"HS256","crit":["x"]}`, `null`, nil))
	f.Add(raw(`{"alg":"HS256"}`, `{"sub":"a","exp":1e400}`, nil))
	f.Add(raw(`{"alg":"HS256"}`, `{"sub":"a","exp":-1e30,"info":null,"channels":[null]}`, nil))
	f.Add(sign(f, jwt.SigningMethodHS256, hmacKey, with("channel", "news", "info", map[string]any{"a": 1}), nil))
	f.Add(sign(f, jwt.SigningMethodHS512, hmacKey, with("exp", testEpoch.Add(-time.Hour).Unix()), nil))
	f.Add(sign(f, jwt.SigningMethodHS256, hmacKey, jwt.MapClaims{"sub": "a", "exp": 1e300, "nbf": -1e300}, nil))
	f.Add(sign(f, jwt.SigningMethodRS256, rsaKey(), with("aud", []any{"x", 1}), nil))
	f.Add(sign(f, jwt.SigningMethodPS256, rsaKey(), validClaims(), nil))

	f.Fuzz(func(t *testing.T, token string) {
		for _, v := range []*Verifier{hmacV, rsaV} {
			for _, verify := range []func(string) (*Claims, error){v.Verify, v.VerifySubscription} {
				c, err := verify(token)
				if err == nil {
					if c == nil || c.Subject == "" || c.Expires.IsZero() {
						t.Fatalf("no error and claims %+v", c)
					}
					continue
				}
				var te *TokenError
				if c != nil || !errors.As(err, &te) || !slices.Contains(reasons, te.Reason) {
					t.Fatalf("claims %+v, error %v (%T)", c, err, err)
				}
			}
		}
	})
}
