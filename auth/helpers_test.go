package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Keys are generated once per test binary; RSA generation is slow.
var (
	rsaKey    = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	rsaKey2   = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	p256Key   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	p256Key2  = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	p384Key   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
	p521Key   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P521()) })
	edKey     = sync.OnceValue(func() ed25519.PrivateKey { return mustEd() })
	edKey2    = sync.OnceValue(func() ed25519.PrivateKey { return mustEd() })
	hmacKey   = []byte("0123456789abcdef0123456789abcdef-test-secret")
	hmacKey2  = []byte("another secret of more than thirty-two bytes")
	testEpoch = time.Date(2030, time.March, 4, 5, 6, 7, 0, time.UTC)
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEd() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// pkixPEM returns the PKIX "PUBLIC KEY" PEM of pub.
func pkixPEM(t testing.TB, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// pkcs1PEM returns the PKCS #1 "RSA PUBLIC KEY" PEM of pub.
func pkcs1PEM(pub *rsa.PublicKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)})
}

// clock is a settable time source for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: testEpoch} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects the log lines of a Verifier; it is safe for the
// refresher goroutine to write while a test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newVerifier returns a Verifier for cfg, with the test clock when cfg has
// none, closed at the end of the test.
func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testEpoch }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// validClaims returns claims that pass Verify at testEpoch.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"exp": testEpoch.Add(time.Hour).Unix(),
		"iat": testEpoch.Add(-time.Minute).Unix(),
	}
}

// with returns a copy of validClaims with the given claims set, and those
// given as nil removed.
func with(kv ...any) jwt.MapClaims {
	c := validClaims()
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
		} else {
			c[k] = kv[i+1]
		}
	}
	return c
}

// sign signs claims with method and key, adding the header fields given.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing %s: %v", method.Alg(), err)
	}
	return s
}

// raw builds a token from a header and payload given as JSON text, and a
// signature given as bytes, without any checks.
func raw(header, payload string, sig []byte) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(sig)
}

// payloadJSON returns the JSON of claims.
func payloadJSON(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantReason fails the test unless err is a *TokenError with the reason,
// and checks that its text holds nothing of the token.
func wantReason(t testing.TB, token string, claims *Claims, err error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got claims %+v, want error %q", claims, reason)
	}
	if claims != nil {
		t.Errorf("got claims %+v together with error %v", claims, err)
	}
	var te *TokenError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T) is not a *TokenError", err, err)
	}
	if te.Reason != reason {
		t.Fatalf("reason %q (%v), want %q", te.Reason, err, reason)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "auth: "+reason) {
		t.Errorf("error text %q does not start with %q", msg, "auth: "+reason)
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 4 && strings.Contains(msg, part) {
			t.Errorf("error text %q contains a part of the token", msg)
		}
	}
}
