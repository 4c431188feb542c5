package e2e

import (
	"context"
	"crypto"
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
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/internal/redistest"
)

// secret is the HMAC key of the instances that take HS tokens.
const secret = "an HMAC secret of at least thirty-two bytes, for tests"

// token signs claims (sub and a one-hour exp unless given) with method and
// key; kid, when set, goes in the header.
func token(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	c := jwt.MapClaims{"sub": "ann", "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// hs is an HS256 token signed with secret.
func hs(t testing.TB, claims jwt.MapClaims) string {
	return token(t, jwt.SigningMethodHS256, []byte(secret), "", claims)
}

// pemFile writes pub as a PKIX PEM file and returns its path.
func pemFile(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// closeOf dials url and returns the close code and reason the server ends
// the connection with (the welcome of a native connection is skipped).
func closeOf(t testing.TB, url string) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	defer conn.CloseNow()
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code, ce.Reason
			}
			t.Fatalf("%s: the connection ended without a close frame: %v", url, err)
		}
	}
}

// wsURL adds a token to a WebSocket URL.
func wsURL(base, tok string) string { return base + "?token=" + url.QueryEscape(tok) }

// Every algorithm and key form the server takes, each in a real process:
// a token signed with the configured key opens a connection (the
// subscribe that needs a user succeeds), and the same claims signed with
// another key of the same kind are refused with 4001 "invalid signature".
func TestTokenAlgorithms(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaOther, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Other, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	_, edOther, _ := ed25519.GenerateKey(rand.Reader)
	jwks := jwksServer(t, map[string]crypto.PublicKey{"r1": rsaKey.Public(), "e1": p256.Public(), "d1": edKey.Public()})
	for _, tc := range []struct {
		name        string
		flags       []string
		good, wrong string
	}{
		{"HS256", []string{"--jwt-hmac-secret", secret}, hs(t, nil),
			token(t, jwt.SigningMethodHS256, []byte("another secret that is thirty-two bytes long"), "", nil)},
		{"HS512", []string{"--jwt-hmac-secret", secret}, token(t, jwt.SigningMethodHS512, []byte(secret), "", nil),
			token(t, jwt.SigningMethodHS512, []byte("another secret that is thirty-two bytes long"), "", nil)},
		{"RS256", []string{"--jwt-public-key", pemFile(t, rsaKey.Public())}, token(t, jwt.SigningMethodRS256, rsaKey, "", nil),
			token(t, jwt.SigningMethodRS256, rsaOther, "", nil)},
		{"PS384", []string{"--jwt-public-key", pemFile(t, rsaKey.Public())}, token(t, jwt.SigningMethodPS384, rsaKey, "", nil),
			token(t, jwt.SigningMethodPS384, rsaOther, "", nil)},
		{"ES384", []string{"--jwt-public-key", pemFile(t, p384.Public())}, token(t, jwt.SigningMethodES384, p384, "", nil),
			token(t, jwt.SigningMethodES384, p384Other, "", nil)},
		{"EdDSA", []string{"--jwt-public-key", pemFile(t, edKey.Public())}, token(t, jwt.SigningMethodEdDSA, edKey, "", nil),
			token(t, jwt.SigningMethodEdDSA, edOther, "", nil)},
		{"JWKS RS256", []string{"--jwks-url", jwks}, token(t, jwt.SigningMethodRS256, rsaKey, "r1", nil),
			token(t, jwt.SigningMethodRS256, rsaOther, "r1", nil)},
		{"JWKS ES256", []string{"--jwks-url", jwks}, token(t, jwt.SigningMethodES256, p256, "e1", nil),
			token(t, jwt.SigningMethodES256, p256, "unknown-kid", nil)},
		{"JWKS EdDSA", []string{"--jwks-url", jwks}, token(t, jwt.SigningMethodEdDSA, edKey, "d1", nil),
			token(t, jwt.SigningMethodEdDSA, edOther, "d1", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := startInstance(t, tc.flags...)
			c := native(t, wsURL(in.ws("/ws"), tc.good))
			if r, err := c.request(`{"id":1,"op":"subscribe","channel":"members"}`, 1, nil); err != nil || r["ok"] != true {
				t.Fatalf("subscribe with a good token: %v %v", r, err)
			}
			if code, reason := closeOf(t, wsURL(in.ws("/ws"), tc.wrong)); code != 4001 || reason != "invalid signature" {
				t.Fatalf("a token of another key: close %d %q, want 4001 invalid signature", code, reason)
			}
		})
	}
}

// jwksServer serves keys as a JWKS and returns its URL.
func jwksServer(t testing.TB, keys map[string]crypto.PublicKey) string {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for kid, k := range keys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		case *ecdsa.PublicKey:
			raw, err := k.Bytes() // 0x04 || X || Y
			if err != nil {
				t.Fatal(err)
			}
			n := (len(raw) - 1) / 2
			set.Keys = append(set.Keys, map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": b64(raw[1 : 1+n]), "y": b64(raw[1+n:])})
		case ed25519.PublicKey:
			set.Keys = append(set.Keys, map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)})
		}
	}
	body, _ := json.Marshal(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Each kind of bad token is refused after the upgrade with 4001 and a
// reason that names it, and with unauthorized (the same reason) in an auth
// request; the connection that asked stays open.
func TestBadTokens(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubPEM := pemFile(t, rsaKey.Public())
	pemBytes, _ := os.ReadFile(pubPEM)
	hsInst := startInstance(t, "--jwt-hmac-secret", secret)
	rsInst := startInstance(t, "--jwt-public-key", pubPEM)
	noneTok := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, `{"sub":"ann","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "."
	for _, tc := range []struct {
		name, tok, reason string
		in                *instance
	}{
		{"expired", hs(t, jwt.MapClaims{"exp": time.Now().Add(-time.Hour).Unix()}), "token expired", hsInst},
		{"not yet valid", hs(t, jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix()}), "token not yet valid", hsInst},
		{"wrong key", token(t, jwt.SigningMethodHS256, []byte("not the server's secret, but as long"), "", nil), "invalid signature", hsInst},
		{"alg none", noneTok, "invalid signature", hsInst},
		{"HS256 signed with the RSA public key", token(t, jwt.SigningMethodHS256, pemBytes, "", nil), "invalid signature", rsInst},
		{"RS256 to an HMAC server", token(t, jwt.SigningMethodRS256, rsaKey, "", nil), "invalid signature", hsInst},
		{"malformed", "not.a.token", "malformed token", hsInst},
		{"no sub", hs(t, jwt.MapClaims{"sub": nil}), "invalid claims", hsInst},
		{"no exp", hs(t, jwt.MapClaims{"exp": nil}), "invalid claims", hsInst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/ws", "/raw/members"} {
				if code, reason := closeOf(t, wsURL(tc.in.ws(path), tc.tok)); code != 4001 || reason != tc.reason {
					t.Errorf("%s: close %d %q, want 4001 %q", path, code, reason, tc.reason)
				}
			}
			c := native(t, tc.in.ws("/ws"))
			r, err := c.request(fmt.Sprintf(`{"id":1,"op":"auth","token":%q}`, tc.tok), 1, nil)
			if e, _ := r["error"].(map[string]any); err != nil || e["code"] != "unauthorized" || e["message"] != tc.reason {
				t.Errorf("auth request: %v %v, want unauthorized %q", r, err, tc.reason)
			}
			if r, err := c.request(`{"id":2,"op":"ping"}`, 2, nil); err != nil || r["ok"] != true {
				t.Errorf("the connection after a refused auth: %v %v", r, err)
			}
		})
	}
	if strings.Contains(hsInst.logs.String(), hs(t, nil)[:20]) {
		t.Error("a token reached the logs")
	}
}

// The rules of each namespace, over native and raw connections, for an
// anonymous client, a client with a token, and a token whose claims grant
// some channels.
func TestPermissionRules(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(cfg, []byte(`namespaces:
  default: {subscribe: public}
  open:    {subscribe: public, publish: public}
  members: {}
  vip:     {subscribe: granted, publish: granted}
  news:    {subscribe: public, publish: api}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, "--jwt-hmac-secret", secret, "--config", cfg)
	anon := native(t, in.ws("/ws"))
	ann := native(t, wsURL(in.ws("/ws"), hs(t, jwt.MapClaims{"channels": []string{"vip:a*"}, "publish": []string{"vip:a1"}})))
	code := func(c *wsClient, id int, req string) string {
		t.Helper()
		r, err := c.request(fmt.Sprintf(req, id), float64(id), nil)
		if err != nil {
			t.Fatal(err)
		}
		if r["ok"] == true {
			return "ok"
		}
		e, _ := r["error"].(map[string]any)
		return fmt.Sprint(e["code"])
	}
	for i, tc := range []struct {
		c    *wsClient
		req  string
		want string
	}{
		{anon, `{"id":%d,"op":"subscribe","channel":"open:x"}`, "ok"},
		{anon, `{"id":%d,"op":"publish","channel":"open:x","data":1}`, "ok"},
		{anon, `{"id":%d,"op":"subscribe","channel":"members:x"}`, "unauthorized"},
		{anon, `{"id":%d,"op":"publish","channel":"lobby","data":1}`, "unauthorized"},
		{anon, `{"id":%d,"op":"subscribe","channel":"vip:a1"}`, "unauthorized"},
		{ann, `{"id":%d,"op":"subscribe","channel":"members:x"}`, "ok"},
		{ann, `{"id":%d,"op":"publish","channel":"members:x","data":1}`, "ok"},
		{ann, `{"id":%d,"op":"subscribe","channel":"vip:a1"}`, "ok"},
		{ann, `{"id":%d,"op":"subscribe","channel":"vip:b"}`, "forbidden"},
		{ann, `{"id":%d,"op":"publish","channel":"vip:a1","data":1}`, "ok"},
		{ann, `{"id":%d,"op":"publish","channel":"vip:a2","data":1}`, "forbidden"},
		{ann, `{"id":%d,"op":"subscribe","channel":"news:x"}`, "ok"},
		{ann, `{"id":%d,"op":"publish","channel":"news:x","data":1}`, "forbidden"},
	} {
		if got := code(tc.c, i+1, tc.req); got != tc.want {
			t.Errorf("%s: %s, want %s", fmt.Sprintf(tc.req, i+1), got, tc.want)
		}
	}
	// Raw: the token on the URL; no right to subscribe closes with 4001.
	if code, _ := closeOf(t, in.ws("/raw/members:x")); code != 4001 {
		t.Errorf("an anonymous raw connection to members: close %d, want 4001", code)
	}
	if code, _ := closeOf(t, wsURL(in.ws("/raw/vip:b"), hs(t, jwt.MapClaims{"channels": []string{"vip:a*"}}))); code != 4001 {
		t.Errorf("a raw connection to a channel the token does not grant: close %d, want 4001", code)
	}
	// A raw client that may read news: but not publish there: its frames are
	// dropped and counted, and it still receives the API's messages.
	raw := dialWS(t, wsURL(in.ws("/raw/news:x"), hs(t, nil)))
	if err := raw.send("from raw"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return metric(t, in, "switchboard_raw_publish_dropped_total") == 1 }, "the raw frame dropped and counted")
	if code, body, err := httpPost(in.url("/api/publish"), `{"channel":"news:x","data":"from the API"}`); err != nil || code != 200 {
		t.Fatalf("API publish: %d %s %v", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if got, err := raw.read(ctx); err != nil || got != "from the API" {
		t.Fatalf("the raw client got %q %v, want the API's message first", got, err)
	}
}

// Without a token a connection has --auth-timeout to send one; auth in time
// keeps it open and gives it its user; a connection that never does is
// closed with 4001.
func TestAuthRequestAndTimeout(t *testing.T) {
	in := startInstance(t, "--jwt-hmac-secret", secret, "--auth-timeout", "1s", "--presence")
	c := native(t, in.ws("/ws"))
	r, err := c.request(fmt.Sprintf(`{"id":1,"op":"auth","token":%q}`, hs(t, jwt.MapClaims{"sub": "bob", "info": map[string]any{"name": "Bob"}})), 1, nil)
	if err != nil || r["ok"] != true || r["user"] != "bob" || r["expires_at"] == nil {
		t.Fatalf("auth: %v %v", r, err)
	}
	if r, err := c.request(`{"id":2,"op":"subscribe","channel":"lobby"}`, 2, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe after auth: %v %v", r, err)
	}
	r, err = c.request(`{"id":3,"op":"presence","channel":"lobby"}`, 3, nil)
	clients, _ := r["clients"].([]any)
	if err != nil || len(clients) != 1 {
		t.Fatalf("presence: %v %v", r, err)
	}
	if e := clients[0].(map[string]any); e["user"] != "bob" || fmt.Sprint(e["info"]) != "map[name:Bob]" {
		t.Fatalf("presence entry %v, want bob with his info", e)
	}
	if code, reason := closeOf(t, in.ws("/ws")); code != 4001 || reason != "no valid token" {
		t.Fatalf("a connection that never authenticates: close %d %q, want 4001", code, reason)
	}
	if r, err := c.request(`{"id":4,"op":"ping"}`, 4, nil); err != nil || r["ok"] != true {
		t.Fatalf("the authenticated connection after the timeout: %v %v", r, err)
	}
}

// A token refreshed before it expires keeps the connection; one that is not
// closes it with 4001 "token expired"; a refresh must be for the same user
// and expire later.
func TestRefresh(t *testing.T) {
	in := startInstance(t, "--jwt-hmac-secret", secret, "--jwt-leeway", "0")
	soon := time.Now().Add(2 * time.Second).Unix()
	kept := native(t, wsURL(in.ws("/ws"), hs(t, jwt.MapClaims{"exp": soon})))
	lapsed := native(t, wsURL(in.ws("/ws"), hs(t, jwt.MapClaims{"exp": soon})))
	for i, tc := range []struct {
		tok, code string
	}{
		{hs(t, jwt.MapClaims{"sub": "someone else"}), "forbidden"},
		{hs(t, jwt.MapClaims{"exp": soon}), "bad_request"},
	} {
		r, err := kept.request(fmt.Sprintf(`{"id":%d,"op":"refresh","token":%q}`, i+1, tc.tok), float64(i+1), nil)
		if e, _ := r["error"].(map[string]any); err != nil || e["code"] != tc.code {
			t.Fatalf("refresh %d: %v %v, want %s", i+1, r, err, tc.code)
		}
	}
	later := time.Now().Add(time.Hour).Unix()
	r, err := kept.request(fmt.Sprintf(`{"id":5,"op":"refresh","token":%q}`, hs(t, jwt.MapClaims{"exp": later})), 5, nil)
	if err != nil || r["ok"] != true || r["expires_at"] != float64(later) {
		t.Fatalf("refresh: %v %v", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = lapsed.read(ctx)
	if ce := (websocket.CloseError{}); !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "token expired" {
		t.Fatalf("the connection whose token expired: %v, want close 4001 token expired", err)
	}
	// The barrier: the expired one is closed, so the sweep that would have
	// closed the refreshed one has run too.
	if r, err := kept.request(`{"id":6,"op":"ping"}`, 6, nil); err != nil || r["ok"] != true {
		t.Fatalf("the refreshed connection after the first token's expiry: %v %v", r, err)
	}
}

// A token the verifier accepts within its leeway (exp just past) is
// honoured until exp plus the leeway, not cut by the next sweep.
func TestExpiryLeeway(t *testing.T) {
	in := startInstance(t, "--jwt-hmac-secret", secret, "--jwt-leeway", "5s")
	c := native(t, wsURL(in.ws("/ws"), hs(t, jwt.MapClaims{"exp": time.Now().Add(-time.Second).Unix()})))
	// Two sweeps (one a second) pass while the connection is still open.
	time.Sleep(2 * time.Second)
	if r, err := c.request(`{"id":1,"op":"ping"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("a token within the leeway, 2s later: %v %v", r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, err := c.read(ctx)
		if err == nil {
			continue
		}
		if ce := (websocket.CloseError{}); !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "token expired" {
			t.Fatalf("after exp plus the leeway: %v, want close 4001 token expired", err)
		}
		return
	}
}

// A subscription token grants one channel to one user, where the
// connection token grants nothing.
func TestSubscriptionTokens(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "granted.yaml")
	if err := os.WriteFile(cfg, []byte("namespaces:\n  private: {subscribe: granted}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startInstance(t, "--jwt-hmac-secret", secret, "--config", cfg)
	c := native(t, wsURL(in.ws("/ws"), hs(t, nil)))
	for i, tc := range []struct {
		channel, tok, want string
	}{
		{"private:a", "", "forbidden"},
		{"private:a", hs(t, jwt.MapClaims{"channel": "private:a"}), "ok"},
		{"private:b", hs(t, jwt.MapClaims{"channel": "private:a"}), "forbidden"},
		{"private:c", hs(t, jwt.MapClaims{"channel": "private:c", "sub": "bob"}), "forbidden"},
		{"private:d", hs(t, jwt.MapClaims{"channel": "private:d", "exp": time.Now().Add(-time.Hour).Unix()}), "unauthorized"},
	} {
		req := fmt.Sprintf(`{"id":%d,"op":"subscribe","channel":%q`, i+1, tc.channel)
		if tc.tok != "" {
			req += fmt.Sprintf(`,"token":%q`, tc.tok)
		}
		r, err := c.request(req+"}", float64(i+1), nil)
		got := "ok"
		if e, _ := r["error"].(map[string]any); e != nil {
			got = fmt.Sprint(e["code"])
		}
		if err != nil || got != tc.want {
			t.Errorf("subscribe %s with token %d: %v %v, want %s", tc.channel, i+1, r, err, tc.want)
		}
	}
}

// Revocation reaches every node: three instances on one Redis, ann on each;
// /api/unsubscribe on one ends each of her subscriptions with the
// unsubscribed event, and /api/disconnect closes each of her connections
// with 4001; bob is untouched.
func TestRevocationAcrossInstances(t *testing.T) {
	redis := redistest.Start(t, nil)
	var insts []*instance
	for range 3 {
		insts = append(insts, startInstance(t, "--redis", redis.URL(), "--jwt-hmac-secret", secret))
	}
	var anns []*wsClient
	for _, in := range insts {
		c := native(t, wsURL(in.ws("/ws"), hs(t, nil)))
		if r, err := c.request(`{"id":1,"op":"subscribe","channel":"room:1"}`, 1, nil); err != nil || r["ok"] != true {
			t.Fatalf("subscribe: %v %v", r, err)
		}
		anns = append(anns, c)
	}
	bob := native(t, wsURL(insts[1].ws("/ws"), hs(t, jwt.MapClaims{"sub": "bob"})))
	if r, err := bob.request(`{"id":1,"op":"subscribe","channel":"room:1"}`, 1, nil); err != nil || r["ok"] != true {
		t.Fatalf("subscribe: %v %v", r, err)
	}
	if code, body, err := httpPost(insts[0].url("/api/unsubscribe"), `{"user":"ann","channel":"room:1"}`); err != nil || code != 200 {
		t.Fatalf("/api/unsubscribe: %d %s %v", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, c := range anns {
		m, err := c.readJSON(ctx)
		if err != nil || m["op"] != "unsubscribed" || m["channel"] != "room:1" || m["reason"] == nil {
			t.Fatalf("ann on instance %d: %v %v, want the unsubscribed event", i, m, err)
		}
		// She is out: unsubscribing again is not_found.
		if r, err := c.request(`{"id":2,"op":"unsubscribe","channel":"room:1"}`, 2, nil); err != nil || r["ok"] == true {
			t.Fatalf("ann on instance %d still subscribed: %v %v", i, r, err)
		}
	}
	// Bob still gets the channel's messages.
	if code, body, err := httpPost(insts[2].url("/api/publish"), `{"channel":"room:1","data":"still here"}`); err != nil || code != 200 {
		t.Fatalf("publish: %d %s %v", code, body, err)
	}
	if m, err := bob.readJSON(ctx); err != nil || m["data"] != "still here" {
		t.Fatalf("bob: %v %v", m, err)
	}
	if code, body, err := httpPost(insts[2].url("/api/disconnect"), `{"user":"ann"}`); err != nil || code != 200 {
		t.Fatalf("/api/disconnect: %d %s %v", code, body, err)
	}
	for i, c := range anns {
		_, err := c.read(ctx)
		if ce := (websocket.CloseError{}); !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "disconnected" {
			t.Fatalf("ann on instance %d: %v, want close 4001 disconnected", i, err)
		}
	}
	if r, err := bob.request(`{"id":3,"op":"ping"}`, 3, nil); err != nil || r["ok"] != true {
		t.Fatalf("bob after ann's disconnect: %v %v", r, err)
	}
}
