package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/goleak"
)

// jwksServer serves a JWKS that a test can change, fail, and count the
// requests for.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	hits   atomic.Int64
	conns  atomic.Int64 // open client connections
}

func newJWKSServer(t *testing.T, keys ...map[string]any) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.set(t, keys...)
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	s.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		switch state {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateClosed, http.StateHijacked:
			s.conns.Add(-1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// set makes the server serve a JWKS of keys.
func (s *jwksServer) set(t *testing.T, keys ...map[string]any) {
	t.Helper()
	body, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	s.setBody(http.StatusOK, body)
}

func (s *jwksServer) setBody(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, pub *rsa.PublicKey, extra ...string) map[string]any {
	m := map[string]any{"kty": "RSA", "kid": kid, "n": b64u(pub.N.Bytes()), "e": b64u(big.NewInt(int64(pub.E)).Bytes())}
	return withMembers(m, extra)
}

func ecJWK(kid string, pub *ecdsa.PublicKey, extra ...string) map[string]any {
	point, err := pub.Bytes() // 0x04, then x and y of equal size
	if err != nil {
		panic(err)
	}
	size := (len(point) - 1) / 2
	m := map[string]any{
		"kty": "EC", "kid": kid, "crv": pub.Curve.Params().Name,
		"x": b64u(point[1 : 1+size]), "y": b64u(point[1+size:]),
	}
	return withMembers(m, extra)
}

func edJWK(kid string, pub ed25519.PublicKey, extra ...string) map[string]any {
	return withMembers(map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(pub)}, extra)
}

func withMembers(m map[string]any, kv []string) map[string]any {
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// startJWKS returns a started Verifier for the server's JWKS.
func startJWKS(t *testing.T, s *jwksServer, cfg Config) *Verifier {
	t.Helper()
	cfg.JWKSURL = s.URL + "/jwks.json"
	v := newVerifier(t, cfg)
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return v
}

// eventually polls cond until it holds, failing the test after a while.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func kidHeader(kid string) map[string]any { return map[string]any{"kid": kid} }

func TestJWKSVerify(t *testing.T) {
	small := mustRSA(1024)
	s := newJWKSServer(t,
		rsaJWK("rsa", &rsaKey().PublicKey),
		rsaJWK("rsa-ps256", &rsaKey2().PublicKey, "alg", "PS256", "use", "sig"),
		ecJWK("p256", &p256Key().PublicKey),
		ecJWK("p384", &p384Key().PublicKey, "alg", "ES384"),
		ecJWK("p521", &p521Key().PublicKey),
		edJWK("ed", edKey().Public().(ed25519.PublicKey), "alg", "EdDSA"),
		// Keys to ignore.
		map[string]any{"kty": "oct", "kid": "oct", "k": b64u(hmacKey)},
		rsaJWK("enc", &rsaKey().PublicKey, "use", "enc"),
		rsaJWK("small", &small.PublicKey),
		rsaJWK("wrong-alg", &rsaKey().PublicKey, "alg", "ES256"),
		ecJWK("p256-as-es384", &p256Key2().PublicKey, "alg", "ES384"),
		withMembers(ecJWK("off-curve", &p256Key2().PublicKey), []string{"y", b64u(make([]byte, 32))}),
		withMembers(edJWK("private", edKey2().Public().(ed25519.PublicKey)), []string{"d", b64u(edKey2().Seed())}),
		map[string]any{"kty": "OKP", "kid": "x25519", "crv": "X25519", "x": b64u(make([]byte, 32))},
		map[string]any{"kty": "RSA", "kid": "bad-n", "n": "***", "e": "AQAB"},
		map[string]any{"kty": "EC", "kid": "short-x", "crv": "P-256", "x": "AQ", "y": "AQ"},
		// A duplicate kid keeps the first key.
		ecJWK("p256", &p256Key2().PublicKey),
	)
	var logs logBuffer
	v := startJWKS(t, s, Config{JWKSRefresh: time.Hour, Logger: logs.logger()})

	good := []struct {
		kid    string
		method jwt.SigningMethod
		key    any
	}{
		{"rsa", jwt.SigningMethodRS256, rsaKey()},
		{"rsa", jwt.SigningMethodPS512, rsaKey()},
		{"rsa-ps256", jwt.SigningMethodPS256, rsaKey2()},
		{"p256", jwt.SigningMethodES256, p256Key()},
		{"p384", jwt.SigningMethodES384, p384Key()},
		{"p521", jwt.SigningMethodES512, p521Key()},
		{"ed", jwt.SigningMethodEdDSA, edKey()},
	}
	for _, g := range good {
		tok := sign(t, g.method, g.key, validClaims(), kidHeader(g.kid))
		if c, err := v.Verify(tok); err != nil || c.Subject != "alice" {
			t.Errorf("kid %s, %s: %+v, %v", g.kid, g.method.Alg(), c, err)
		}
	}

	bad := []struct {
		name   string
		header map[string]any
		method jwt.SigningMethod
		key    any
	}{
		{"unknown kid", kidHeader("nope"), jwt.SigningMethodRS256, rsaKey()},
		{"no kid, several keys", nil, jwt.SigningMethodRS256, rsaKey()},
		{"kid not a string", map[string]any{"kid": 7}, jwt.SigningMethodRS256, rsaKey()},
		{"key of another kid", kidHeader("rsa"), jwt.SigningMethodRS256, rsaKey2()},
		{"alg pinned to PS256", kidHeader("rsa-ps256"), jwt.SigningMethodRS256, rsaKey2()},
		{"EC key for RSA alg", kidHeader("p256"), jwt.SigningMethodRS256, rsaKey()},
		{"ES384 for the P-256 key", kidHeader("p256"), jwt.SigningMethodES384, p384Key()},
		{"HMAC with a JWKS", kidHeader("oct"), jwt.SigningMethodHS256, hmacKey},
		{"HMAC keyed with an RSA modulus", kidHeader("rsa"), jwt.SigningMethodHS256, rsaKey().N.Bytes()},
		{"second key of a duplicate kid", kidHeader("p256"), jwt.SigningMethodES256, p256Key2()},
		{"use enc", kidHeader("enc"), jwt.SigningMethodRS256, rsaKey()},
		{"small RSA", kidHeader("small"), jwt.SigningMethodRS256, small},
		{"alg not of kty", kidHeader("wrong-alg"), jwt.SigningMethodRS256, rsaKey()},
		{"alg not of crv", kidHeader("p256-as-es384"), jwt.SigningMethodES256, p256Key2()},
		{"point not on curve", kidHeader("off-curve"), jwt.SigningMethodES256, p256Key2()},
		{"private key published", kidHeader("private"), jwt.SigningMethodEdDSA, edKey2()},
	}
	for _, b := range bad {
		tok := sign(t, b.method, b.key, validClaims(), b.header)
		c, err := v.Verify(tok)
		if err == nil {
			t.Errorf("%s: accepted", b.name)
			continue
		}
		wantReason(t, tok, c, err, ReasonSignature)
	}
	if !strings.Contains(logs.String(), "private key material") || !strings.Contains(logs.String(), "duplicate kid") {
		t.Errorf("ignored keys were not logged:\n%s", logs.String())
	}

	// A set of one key accepts a token without a kid.
	one := newJWKSServer(t, edJWK("only", edKey().Public().(ed25519.PublicKey)))
	v1 := startJWKS(t, one, Config{JWKSRefresh: time.Hour})
	tok := sign(t, jwt.SigningMethodEdDSA, edKey(), validClaims(), nil)
	if _, err := v1.Verify(tok); err != nil {
		t.Errorf("no kid, one key: %v", err)
	}
	tok = sign(t, jwt.SigningMethodEdDSA, edKey(), validClaims(), kidHeader("other"))
	c, err := v1.Verify(tok)
	wantReason(t, tok, c, err, ReasonSignature)
}

// TestJWKSRotation follows the server's key set with the background
// refresh, and keeps the last good set when the server fails.
func TestJWKSRotation(t *testing.T) {
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))
	var logs logBuffer
	v := startJWKS(t, s, Config{JWKSRefresh: 20 * time.Millisecond, Logger: logs.logger()})
	tok1 := sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("k1"))
	tok2 := sign(t, jwt.SigningMethodES256, p256Key(), validClaims(), kidHeader("k2"))
	if _, err := v.Verify(tok1); err != nil {
		t.Fatalf("k1: %v", err)
	}
	// Use up the on-demand fetch (the clock does not move), so that only
	// the background refresh can bring k2.
	probe := sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("probe"))
	c, err := v.Verify(probe)
	wantReason(t, probe, c, err, ReasonSignature)

	s.set(t, ecJWK("k2", &p256Key().PublicKey))
	eventually(t, "the refresh brings k2", func() bool { _, err := v.Verify(tok2); return err == nil })
	c, err = v.Verify(tok1)
	wantReason(t, tok1, c, err, ReasonSignature)

	for _, fail := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"500", http.StatusInternalServerError, []byte("oops")},
		{"not JSON", http.StatusOK, []byte("<html>")},
		{"no keys", http.StatusOK, []byte(`{"keys":[]}`)},
		{"too big", http.StatusOK, []byte(`{"keys":[],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`)},
	} {
		s.setBody(fail.status, fail.body)
		// Two more requests mean that at least one fetch of the failing
		// response has been completed.
		from := s.hits.Load()
		eventually(t, fail.name+" is fetched", func() bool { return s.hits.Load() >= from+2 })
		if _, err := v.Verify(tok2); err != nil {
			t.Errorf("after %s: %v", fail.name, err)
		}
	}
	if !strings.Contains(logs.String(), "keeping the last good keys") {
		t.Errorf("failures were not logged:\n%s", logs.String())
	}

	s.set(t, rsaJWK("k1", &rsaKey().PublicKey))
	eventually(t, "the refresh brings k1 back", func() bool { _, err := v.Verify(tok1); return err == nil })
}

// TestJWKSFetchErrors checks each way a fetch can fail, and that none
// replaces the key set in use.
func TestJWKSFetchErrors(t *testing.T) {
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))
	v := newVerifier(t, Config{JWKSURL: s.URL})
	if err := v.fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := v.keys.Load()
	for _, tc := range []struct {
		status int
		body   string
		want   error
	}{
		{http.StatusNotFound, "", errJWKSStatus},
		{http.StatusOK, "{", errJWKSDecode},
		{http.StatusOK, `{"keys":{}}`, errJWKSDecode},
		{http.StatusOK, `{"keys":[{"kty":"oct","k":"AAAA"}]}`, errJWKSNoKeys},
		{http.StatusOK, strings.Repeat(" ", maxJWKSBytes) + `{"keys":[]}`, errJWKSTooBig},
	} {
		s.setBody(tc.status, []byte(tc.body))
		if err := v.fetch(context.Background()); !errors.Is(err, tc.want) {
			t.Errorf("status %d, body %.20q: %v, want %v", tc.status, tc.body, err, tc.want)
		}
		if v.keys.Load() != before {
			t.Errorf("status %d, body %.20q replaced the key set", tc.status, tc.body)
		}
	}

	// Exactly 1 MiB is still accepted.
	body, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("k1", &rsaKey().PublicKey)}})
	body = append(body, strings.Repeat(" ", maxJWKSBytes-len(body))...)
	s.setBody(http.StatusOK, body)
	if err := v.fetch(context.Background()); err != nil {
		t.Errorf("a body of exactly 1 MiB: %v", err)
	}

	// A server that is gone.
	s.Close()
	if err := v.fetch(context.Background()); !errors.Is(err, errJWKSFetch) {
		t.Errorf("closed server: %v", err)
	}
}

// TestJWKSOnDemandRateLimit checks that unknown kids cause at most one
// fetch per 30 seconds, however many tokens present them.
func TestJWKSOnDemandRateLimit(t *testing.T) {
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))
	clk := newClock()
	v := startJWKS(t, s, Config{JWKSRefresh: time.Hour, Now: clk.Now})
	if got := s.hits.Load(); got != 1 {
		t.Fatalf("%d requests after Start, want 1", got)
	}
	unknown := func() string {
		return sign(t, jwt.SigningMethodRS256, rsaKey(), jwt.MapClaims{"sub": "alice", "exp": clk.Now().Add(time.Hour).Unix()}, kidHeader("unknown"))
	}

	// A newly published key is found by the first token that uses it.
	s.set(t, rsaJWK("k1", &rsaKey().PublicKey), ecJWK("k2", &p256Key().PublicKey))
	tok2 := sign(t, jwt.SigningMethodES256, p256Key(), validClaims(), kidHeader("k2"))
	if _, err := v.Verify(tok2); err != nil {
		t.Fatalf("new kid: %v", err)
	}
	if got := s.hits.Load(); got != 2 {
		t.Fatalf("%d requests after a new kid, want 2", got)
	}

	// Within 30 seconds, no more fetches, from one goroutine or many.
	for range 5 {
		tok := unknown()
		c, err := v.Verify(tok)
		wantReason(t, tok, c, err, ReasonSignature)
	}
	clk.Add(29 * time.Second)
	hammer(t, v, unknown(), 20)
	if got := s.hits.Load(); got != 2 {
		t.Fatalf("%d requests after unknown kids within 30s, want 2", got)
	}

	// After 30 seconds, one more, however many ask at once.
	clk.Add(time.Second)
	hammer(t, v, unknown(), 20)
	if got := s.hits.Load(); got != 3 {
		t.Fatalf("%d requests after unknown kids 30s later, want 3", got)
	}
}

// hammer verifies tok from n goroutines at once; all must fail with
// ReasonSignature.
func hammer(t *testing.T, v *Verifier, tok string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := v.Verify(tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		var te *TokenError
		if !errors.As(err, &te) || te.Reason != ReasonSignature {
			t.Errorf("Verify: %v, want %q", err, ReasonSignature)
		}
	}
}

// TestJWKSFirstFetchFails starts against a failing server: Start succeeds,
// tokens fail until the server recovers, and the log does not reveal the
// credentials in the URL.
func TestJWKSFirstFetchFails(t *testing.T) {
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))
	s.setBody(http.StatusServiceUnavailable, nil)
	var logs logBuffer
	v := newVerifier(t, Config{
		JWKSURL:     strings.Replace(s.URL, "http://", "http://user:hunter2@", 1) + "/jwks?access_token=s3cr3t",
		JWKSRefresh: 20 * time.Millisecond,
		Logger:      logs.logger(),
	})
	if err := v.Start(context.Background()); err != nil {
		t.Fatalf("Start with a failing server: %v", err)
	}
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("k1"))
	c, err := v.Verify(tok)
	wantReason(t, tok, c, err, ReasonSignature)
	from := s.hits.Load()
	eventually(t, "the fetch is retried", func() bool { return s.hits.Load() >= from+2 })

	s.set(t, rsaJWK("k1", &rsaKey().PublicKey))
	eventually(t, "the keys arrive", func() bool { _, err := v.Verify(tok); return err == nil })

	out := logs.String()
	if !strings.Contains(out, "first JWKS fetch failed") {
		t.Errorf("the failure was not logged:\n%s", out)
	}
	for _, secret := range []string{"hunter2", "s3cr3t", strings.Split(tok, ".")[1], strings.Split(tok, ".")[2]} {
		if strings.Contains(out, secret) {
			t.Errorf("the log holds %q:\n%s", secret, out)
		}
	}
}

func TestStartAndClose(t *testing.T) {
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))

	// Close without Start, twice.
	v := newVerifier(t, Config{JWKSURL: s.URL})
	v.Close()
	v.Close()
	if err := v.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}

	// Start twice.
	v = startJWKS(t, s, Config{})
	if err := v.Start(context.Background()); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v", err)
	}

	// A context that ends first: Start fails, and may be called again.
	v = newVerifier(t, Config{JWKSURL: s.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Start(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Start with a cancelled context: %v", err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Errorf("Start after a cancelled Start: %v", err)
	}

	// Without a JWKS, Start does nothing.
	hv := newVerifier(t, Config{HMACSecret: hmacKey})
	if err := hv.Start(context.Background()); err != nil {
		t.Errorf("Start with an HMAC secret: %v", err)
	}
	hv.Close()
	tok := sign(t, jwt.SigningMethodHS256, hmacKey, validClaims(), nil)
	if _, err := hv.Verify(tok); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

// TestCloseStopsRefresher checks that Close ends the refresher goroutine
// and the connections of the Verifier's own HTTP client, and that a closed
// Verifier fetches no more.
func TestCloseStopsRefresher(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	s := newJWKSServer(t, rsaJWK("k1", &rsaKey().PublicKey))
	cfg := Config{JWKSURL: s.URL, JWKSRefresh: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Now: newClock().Now}
	v, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refresher runs", func() bool { return s.hits.Load() >= 3 })
	v.Close()
	// The Verifier's own client closes its connections.
	eventually(t, "the client's connections are closed", func() bool { return s.conns.Load() == 0 })
	hits := s.hits.Load()
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("unknown"))
	c, err := v.Verify(tok)
	wantReason(t, tok, c, err, ReasonSignature)
	if got := s.hits.Load(); got != hits {
		t.Errorf("a closed Verifier fetched the JWKS (%d requests, then %d)", hits, got)
	}
	tok = sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("k1"))
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("Verify with the cached keys after Close: %v", err)
	}
	s.Close()
	goleak.VerifyNone(t, ignore)
}

// TestCloseDuringFetch closes a Verifier while its on-demand fetch waits
// for a server that does not answer: Close returns and the Verify ends.
func TestCloseDuringFetch(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			body, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("k1", &rsaKey().PublicKey)}})
			_, _ = w.Write(body)
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	v := startJWKS(t, &jwksServer{Server: srv}, Config{JWKSRefresh: time.Hour})

	done := make(chan error, 1)
	tok := sign(t, jwt.SigningMethodRS256, rsaKey(), validClaims(), kidHeader("unknown"))
	go func() {
		_, err := v.Verify(tok)
		done <- err
	}()
	eventually(t, "the on-demand fetch is in flight", func() bool { return hits.Load() == 2 })
	v.Close()
	var te *TokenError
	if err := <-done; !errors.As(err, &te) || te.Reason != ReasonSignature {
		t.Errorf("Verify interrupted by Close: %v", err)
	}
}

// TestJWKSOnDemandShared checks that the tokens which find an on-demand
// fetch in flight wait for it, and are accepted when it brings their key.
func TestJWKSOnDemandShared(t *testing.T) {
	const n = 8
	release := make(chan struct{})
	var hits atomic.Int64
	set1, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("k1", &rsaKey().PublicKey)}})
	set2, _ := json.Marshal(map[string]any{"keys": []any{rsaJWK("k1", &rsaKey().PublicKey), ecJWK("k2", &p256Key().PublicKey)}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			_, _ = w.Write(set1)
			return
		}
		select {
		case <-release:
			_, _ = w.Write(set2)
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	v := startJWKS(t, &jwksServer{Server: srv}, Config{JWKSRefresh: time.Hour})

	tok := sign(t, jwt.SigningMethodES256, p256Key(), validClaims(), kidHeader("k2"))
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			_, err := v.Verify(tok)
			errs <- err
		})
	}
	// Release the server only when every Verify is inside the on-demand
	// refresh: one fetching, the others waiting for it.
	eventually(t, "every Verify waits for the fetch", func() bool {
		return hits.Load() == 2 && goroutinesIn("(*Verifier).refreshOnDemand") == n
	})
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if got := hits.Load(); got != 2 {
		t.Errorf("%d requests, want 2", got)
	}
}

// goroutinesIn counts the goroutines whose stack holds the function.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			count++
		}
	}
	return count
}
