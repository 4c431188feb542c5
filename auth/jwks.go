package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"
)

const (
	// maxJWKSBytes bounds the body of a JWKS response.
	maxJWKSBytes = 1 << 20
	// onDemandInterval is the least time between two fetches caused by a
	// token with an unknown kid.
	onDemandInterval = 30 * time.Second
	// minRetry is the first delay after a failed background fetch; the
	// delay doubles with each failure up to Config.JWKSRefresh.
	minRetry = time.Second
)

// Errors of a JWKS fetch. They are logged, never returned to a caller.
var (
	errJWKSStatus  = errors.New("auth: JWKS response status is not 200")
	errJWKSTooBig  = errors.New("auth: JWKS response is larger than 1 MiB")
	errJWKSDecode  = errors.New("auth: JWKS response is not a JWK set")
	errJWKSNoKeys  = errors.New("auth: JWKS has no usable key")
	errJWKSFetch   = errors.New("auth: cannot fetch JWKS")
	errJWKSRequest = errors.New("auth: cannot make the JWKS request")
)

// keySet is one version of the JWKS, never modified once published.
type keySet struct {
	byKID map[string]*verifyKey
	// only is the single key of a set of one, which a token without a kid
	// may use; nil otherwise.
	only *verifyKey
}

// lookup returns the key for a token's kid; hasKID is false when the token
// has none.
func (s *keySet) lookup(kid string, hasKID bool) *verifyKey {
	if s == nil {
		return nil
	}
	if !hasKID {
		return s.only
	}
	return s.byKID[kid]
}

// jwk is the JSON form of one key of a JWKS (RFC 7517, RFC 7518 section 6,
// RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"`
}

// parseJWKS decodes a JWKS document. Keys that cannot be used are left out
// and logged at debug level; a set without any usable key is an error.
func (v *Verifier) parseJWKS(body []byte) (*keySet, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: %w", errJWKSDecode, err)
	}
	set := &keySet{byKID: make(map[string]*verifyKey, len(doc.Keys))}
	for i, raw := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			v.log.Debug("auth: JWKS key ignored", "index", i, "reason", "not a JWK")
			continue
		}
		if j.D != "" {
			v.log.Warn("auth: JWKS key ignored: it holds private key material", "index", i, "kid", j.Kid)
			continue
		}
		k, err := j.verifyKey()
		if err != nil {
			v.log.Debug("auth: JWKS key ignored", "index", i, "kid", j.Kid, "reason", err.Error())
			continue
		}
		if _, dup := set.byKID[j.Kid]; dup {
			v.log.Debug("auth: JWKS key ignored", "index", i, "kid", j.Kid, "reason", "duplicate kid")
			continue
		}
		set.byKID[j.Kid] = k
	}
	if len(set.byKID) == 0 {
		return nil, errJWKSNoKeys
	}
	if len(set.byKID) == 1 {
		for _, k := range set.byKID {
			set.only = k
		}
	}
	return set, nil
}

// verifyKey returns the key j describes, allowed the algorithms its type and
// curve permit, narrowed to its "alg" when it has one.
func (j *jwk) verifyKey() (*verifyKey, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use is %q, not sig", j.Use)
	}
	var pub any
	var err error
	switch j.Kty {
	case "RSA":
		pub, err = j.rsa()
	case "EC":
		pub, err = j.ec()
	case "OKP":
		pub, err = j.okp()
	default:
		return nil, fmt.Errorf("kty %q is not RSA, EC or OKP", j.Kty)
	}
	if err != nil {
		return nil, err
	}
	k, err := publicKey(pub)
	if err != nil {
		return nil, err
	}
	if j.Alg != "" {
		if !slices.Contains(k.algs, j.Alg) {
			return nil, fmt.Errorf("alg %q does not suit a %s key", j.Alg, j.Kty)
		}
		k.algs = []string{j.Alg}
	}
	return k, nil
}

func (j *jwk) rsa() (*rsa.PublicKey, error) {
	n, err := b64(j.N, "n")
	if err != nil {
		return nil, err
	}
	e, err := b64(j.E, "e")
	if err != nil {
		return nil, err
	}
	if len(n) == 0 || n[0] == 0 {
		return nil, errors.New("n is empty or not minimal")
	}
	if len(e) == 0 || len(e) > 4 || e[0] == 0 {
		return nil, errors.New("e is empty, not minimal or too large")
	}
	exp := new(big.Int).SetBytes(e)
	if exp.Int64() < 3 || exp.Int64() > 1<<31-1 || exp.Bit(0) == 0 {
		return nil, errors.New("e is not an odd number from 3 to 2^31-1")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
}

func (j *jwk) ec() (*ecdsa.PublicKey, error) {
	var curve elliptic.Curve
	var size int
	switch j.Crv {
	case "P-256":
		curve, size = elliptic.P256(), 32
	case "P-384":
		curve, size = elliptic.P384(), 48
	case "P-521":
		curve, size = elliptic.P521(), 66
	default:
		return nil, fmt.Errorf("crv %q is not P-256, P-384 or P-521", j.Crv)
	}
	x, err := b64(j.X, "x")
	if err != nil {
		return nil, err
	}
	y, err := b64(j.Y, "y")
	if err != nil {
		return nil, err
	}
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("x and y are not %d bytes each", size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(point, 4)
	point = append(point, x...)
	point = append(point, y...)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("not a point of %s: %w", j.Crv, err)
	}
	return pub, nil
}

func (j *jwk) okp() (ed25519.PublicKey, error) {
	if j.Crv != "Ed25519" {
		return nil, fmt.Errorf("crv %q is not Ed25519", j.Crv)
	}
	x, err := b64(j.X, "x")
	if err != nil {
		return nil, err
	}
	if len(x) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("x is not %d bytes", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(x), nil
}

// b64 decodes the base64url member name of a JWK.
func b64(s, name string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s is not base64url: %w", name, err)
	}
	return b, nil
}

// fetch gets the JWKS once and, when it holds a usable key, publishes it.
// On error the key set in use stays as it was. Fetches are serialised so
// that an older response never replaces a newer one.
func (v *Verifier) fetch(ctx context.Context) error {
	v.fetchMu.Lock()
	defer v.fetchMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, v.jwksTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.jwksURL, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", errJWKSRequest, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, which may carry credentials in its
		// query; keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("%w: %w", errJWKSFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Read a little so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%w: %d", errJWKSStatus, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return fmt.Errorf("%w: reading the body: %w", errJWKSFetch, err)
	}
	if len(body) > maxJWKSBytes {
		return errJWKSTooBig
	}
	set, err := v.parseJWKS(body)
	if err != nil {
		return err
	}
	v.keys.Store(set)
	return nil
}

// refresh is the refresher goroutine, started by Start and waited for by
// Close. first is the outcome of Start's fetch.
func (v *Verifier) refresh(ctx context.Context, first error) {
	defer v.wg.Done()
	failures := 0
	if first != nil {
		failures = 1
	}
	timer := time.NewTimer(v.nextFetch(failures))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := v.fetch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			delay := v.nextFetch(failures)
			v.log.Warn("auth: JWKS refresh failed; keeping the last good keys",
				"url", v.jwksLogURL, "err", err, "failures", failures, "retry_in", delay)
			timer.Reset(delay)
		default:
			if failures > 0 {
				v.log.Info("auth: JWKS loaded", "url", v.jwksLogURL, "keys", len(v.keys.Load().byKID))
			} else {
				v.log.Debug("auth: JWKS refreshed", "url", v.jwksLogURL, "keys", len(v.keys.Load().byKID))
			}
			failures = 0
			timer.Reset(v.refreshEvery)
		}
	}
}

// nextFetch returns the delay before the next background fetch after the
// given number of consecutive failures: the refresh interval after a
// success, else minRetry doubled for each further failure, with jitter, and
// never more than the refresh interval.
func (v *Verifier) nextFetch(failures int) time.Duration {
	if failures == 0 {
		return v.refreshEvery
	}
	d := min(minRetry, v.refreshEvery)
	for i := 1; i < failures && d < v.refreshEvery; i++ {
		d *= 2
	}
	d = min(d, v.refreshEvery)
	// Up to a quarter less, so that many servers restarted together do not
	// fetch in step.
	return d - rand.N(d/4+1)
}

// refreshOnDemand fetches the JWKS for a token whose kid is not in the set,
// unless a fetch for that reason started less than onDemandInterval ago. A
// caller that finds such a fetch in flight waits for it. It reports whether
// the key set may have changed, so that the caller looks again.
func (v *Verifier) refreshOnDemand() bool {
	if !v.started.Load() || v.life.Err() != nil {
		return false
	}
	v.odMu.Lock()
	if wait := v.odInflight; wait != nil {
		v.odMu.Unlock()
		select {
		case <-wait:
		case <-v.life.Done():
		}
		return true
	}
	now := v.now()
	if v.odFetched && now.Sub(v.odLast) < onDemandInterval {
		v.odMu.Unlock()
		return false
	}
	v.odFetched, v.odLast = true, now
	done := make(chan struct{})
	v.odInflight = done
	v.odMu.Unlock()

	if err := v.fetch(v.life); err != nil && v.life.Err() == nil {
		v.log.Warn("auth: JWKS fetch for an unknown kid failed", "url", v.jwksLogURL, "err", err)
	}

	v.odMu.Lock()
	v.odInflight = nil
	v.odMu.Unlock()
	close(done)
	return true
}

// redactURL returns u without user information or query, for logs.
func redactURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return r.String()
}
