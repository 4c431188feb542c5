package auth

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of Config.
const (
	DefaultJWKSRefresh = 5 * time.Minute
	DefaultJWKSTimeout = 10 * time.Second
	DefaultLeeway      = 30 * time.Second
)

// maxTokenLen bounds the length of a token Verify looks at, so that a
// client cannot make the server decode megabytes of JSON before the
// signature is checked.
const maxTokenLen = 64 << 10

// Config configures a Verifier. Exactly one of HMACSecret, PublicKeyPEM and
// JWKSURL must be set. Zero fields take the defaults given.
type Config struct {
	// HMACSecret is the shared secret of HS256, HS384 and HS512 tokens, at
	// least 32 bytes long.
	HMACSecret []byte
	// PublicKeyPEM holds a PEM-encoded public key: a "PUBLIC KEY" (PKIX)
	// block with an RSA, EC or Ed25519 key, an "RSA PUBLIC KEY" (PKCS #1)
	// block, or a "CERTIFICATE" block, whose key is used and whose validity
	// is not checked. RSA keys must have at least 2048 bits; EC keys must
	// be on P-256, P-384 or P-521.
	PublicKeyPEM []byte
	// JWKSURL is the http or https URL of a JWKS document. Tokens select a
	// key by their "kid" header; a token without one is accepted only when
	// the set holds exactly one key. RSA, EC and OKP (Ed25519) keys are
	// used; others are ignored.
	JWKSURL string
	// JWKSRefresh is the interval of the background JWKS refresh.
	// Default: DefaultJWKSRefresh.
	JWKSRefresh time.Duration
	// JWKSTimeout bounds each JWKS fetch. Default: DefaultJWKSTimeout.
	JWKSTimeout time.Duration
	// HTTPClient fetches the JWKS. Default: a client of the Verifier's own
	// with a timeout of JWKSTimeout, whose idle connections Close closes.
	HTTPClient *http.Client
	// Issuer, when set, must equal the token's "iss".
	Issuer string
	// Audience, when set, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew allowed when "exp", "nbf" and "iat" are
	// checked. Default: DefaultLeeway; a negative Leeway allows none.
	Leeway time.Duration
	// Logger receives the Verifier's logs. Default: slog.Default().
	Logger *slog.Logger
	// Now returns the current time; tests set it. Default: time.Now.
	Now func() time.Time
}

// Verifier verifies tokens. Make one with New.
type Verifier struct {
	log      *slog.Logger
	now      func() time.Time
	issuer   string
	audience string
	leeway   time.Duration

	// static is the key of an HMAC or PEM configuration; nil with a JWKS.
	static *verifyKey

	// The JWKS, when configured.
	jwksURL      string
	jwksLogURL   string // jwksURL without credentials or query
	jwksTimeout  time.Duration
	refreshEvery time.Duration
	client       *http.Client
	ownTransport *http.Transport // the default client's, closed by Close
	keys         atomic.Pointer[keySet]
	fetchMu      sync.Mutex // serialises fetches

	// life ends at Close; it bounds every fetch and the refresher.
	life    context.Context
	cancel  context.CancelFunc
	started atomic.Bool
	mu      sync.Mutex // guards closed and the start of the refresher
	closed  bool
	wg      sync.WaitGroup // the refresher
	closing sync.Once

	// On-demand fetches for unknown kids.
	odMu       sync.Mutex
	odFetched  bool          // an on-demand fetch has happened
	odLast     time.Time     // when the last one started
	odInflight chan struct{} // closed when the fetch in flight ends
}

// New returns a Verifier for cfg. It fails, with an error wrapping
// ErrConfig, when cfg does not set exactly one key source or when the key
// cannot be used. New does no I/O; with a JWKS, call Start.
func New(cfg Config) (*Verifier, error) {
	sources := 0
	for _, set := range []bool{len(cfg.HMACSecret) > 0, len(cfg.PublicKeyPEM) > 0, cfg.JWKSURL != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return nil, fmt.Errorf("%w: exactly one of HMACSecret, PublicKeyPEM and JWKSURL must be set, not %d", ErrConfig, sources)
	}
	if cfg.JWKSRefresh < 0 || cfg.JWKSTimeout < 0 {
		return nil, fmt.Errorf("%w: JWKSRefresh and JWKSTimeout must not be negative", ErrConfig)
	}
	v := &Verifier{
		log:          cfg.Logger,
		now:          cfg.Now,
		issuer:       cfg.Issuer,
		audience:     cfg.Audience,
		leeway:       cfg.Leeway,
		refreshEvery: cfg.JWKSRefresh,
		jwksTimeout:  cfg.JWKSTimeout,
	}
	if v.log == nil {
		v.log = slog.Default()
	}
	if v.now == nil {
		v.now = time.Now
	}
	switch {
	case v.leeway == 0:
		v.leeway = DefaultLeeway
	case v.leeway < 0:
		v.leeway = 0
	}
	if v.refreshEvery == 0 {
		v.refreshEvery = DefaultJWKSRefresh
	}
	if v.jwksTimeout == 0 {
		v.jwksTimeout = DefaultJWKSTimeout
	}

	switch {
	case len(cfg.HMACSecret) > 0:
		if len(cfg.HMACSecret) < minSecret {
			return nil, fmt.Errorf("%w: HMACSecret is shorter than %d bytes", ErrConfig, minSecret)
		}
		v.static = &verifyKey{key: append([]byte(nil), cfg.HMACSecret...), algs: hmacAlgs}
	case len(cfg.PublicKeyPEM) > 0:
		k, err := parsePEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		v.static = k
	default:
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			// The URL is not repeated: it may carry credentials.
			return nil, fmt.Errorf("%w: JWKSURL is not an http or https URL", ErrConfig)
		}
		v.jwksURL = cfg.JWKSURL
		v.jwksLogURL = redactURL(u)
		v.client = cfg.HTTPClient
		if v.client == nil {
			v.ownTransport = http.DefaultTransport.(*http.Transport).Clone()
			v.client = &http.Client{Timeout: v.jwksTimeout, Transport: v.ownTransport}
		}
	}
	v.life, v.cancel = context.WithCancel(context.Background())
	return v, nil
}

// Start fetches the JWKS once and starts the refresher goroutine, which
// fetches it again every Config.JWKSRefresh until Close. A failed first
// fetch is logged and retried in the background; until a key set arrives,
// every token fails with ReasonSignature. ctx bounds only the first fetch:
// when it ends before that fetch does, Start returns its error, starts
// nothing, and may be called again. Otherwise Start returns ErrStarted when
// called again, and ErrClosed after Close. Without a JWKS, Start does
// nothing and returns nil.
func (v *Verifier) Start(ctx context.Context) error {
	if v.jwksURL == "" {
		return nil
	}
	v.mu.Lock()
	switch {
	case v.closed:
		v.mu.Unlock()
		return ErrClosed
	case v.started.Load():
		v.mu.Unlock()
		return ErrStarted
	}
	v.started.Store(true)
	v.mu.Unlock()

	fctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(v.life, cancel)
	first := v.fetch(fctx)
	stop()
	cancel()

	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.closed:
		return ErrClosed
	case first != nil && ctx.Err() != nil:
		// Start may be called again.
		v.started.Store(false)
		return fmt.Errorf("auth: first JWKS fetch: %w", ctx.Err())
	case first != nil:
		v.log.Warn("auth: first JWKS fetch failed; retrying in the background",
			"url", v.jwksLogURL, "err", first)
	default:
		v.log.Info("auth: JWKS loaded", "url", v.jwksLogURL, "keys", len(v.keys.Load().byKID))
	}
	v.wg.Add(1)
	go v.refresh(v.life, first)
	return nil
}

// Close stops the refresher and waits for it to end. It may be called more
// than once, and without Start.
func (v *Verifier) Close() {
	v.closing.Do(func() {
		v.mu.Lock()
		v.closed = true
		v.mu.Unlock()
		v.cancel()
		v.wg.Wait()
		if v.ownTransport != nil {
			v.ownTransport.CloseIdleConnections()
		}
	})
}

// Leeway is the clock skew the verifier allows: a token is honoured until
// this long after its "exp".
func (v *Verifier) Leeway() time.Duration { return v.leeway }

// Verify checks a connection token and returns its claims. The token must
// be signed with an algorithm the configured key allows, carry "exp" and a
// non-empty "sub", and satisfy "nbf", "iat" (with Config.Leeway) and, when
// configured, "iss" and "aud". Tokens longer than 64 KiB are refused as
// malformed. Every error is a *TokenError.
//
// With a JWKS, a token whose kid is unknown may make Verify fetch the JWKS,
// for at most Config.JWKSTimeout (see the package documentation).
func (v *Verifier) Verify(token string) (*Claims, error) {
	wc, err := v.verify(token)
	if err != nil {
		return nil, err
	}
	return wc.claims(), nil
}

// VerifySubscription checks a subscription token as Verify does, and also
// requires a non-empty "channel" claim. The caller compares the claims'
// Subject and Channel with the connection and the channel asked for.
func (v *Verifier) VerifySubscription(token string) (*Claims, error) {
	wc, err := v.verify(token)
	if err != nil {
		return nil, err
	}
	if wc.Channel == "" {
		return nil, tokenError(ReasonClaims, "channel is missing or empty", nil)
	}
	return wc.claims(), nil
}

func (v *Verifier) verify(token string) (*wireClaims, error) {
	if len(token) > maxTokenLen {
		return nil, tokenError(ReasonMalformed, "token is longer than 64 KiB", nil)
	}
	allowed := asymmetricAlgs
	keyFunc := v.jwksKey
	if v.static != nil {
		allowed = v.static.algs
		keyFunc = v.staticKey
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(allowed),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	var wc wireClaims
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, &wc, keyFunc)
	if err != nil {
		return nil, v.classify(err, tok, &wc, allowed)
	}
	return &wc, nil
}

// staticKey is the key function of an HMAC or PEM configuration.
func (v *Verifier) staticKey(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	if !v.static.fits(t.Method) {
		return nil, errAlgorithm
	}
	return v.static.key, nil
}

// jwksKey is the key function of a JWKS configuration.
func (v *Verifier) jwksKey(t *jwt.Token) (any, error) {
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	kid, hasKID := t.Header["kid"]
	kidStr, ok := kid.(string)
	if hasKID && !ok {
		return nil, errUnknownKey
	}
	k := v.keys.Load().lookup(kidStr, hasKID)
	if k == nil && v.refreshOnDemand() {
		k = v.keys.Load().lookup(kidStr, hasKID)
	}
	switch {
	case k == nil:
		return nil, errUnknownKey
	case !k.fits(t.Method):
		return nil, errAlgorithm
	}
	return k.key, nil
}
