package server

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/switchboard-rt/switchboard/auth"
	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/protocol"
)

// DefaultAuthTimeout is how long a connection has to present a valid token
// when tokens are required.
const DefaultAuthTimeout = 10 * time.Second

// tokens is the hub.Tokens of an auth.Verifier: it turns claims into an
// identity and token errors into what a client is told.
type tokens struct{ v *auth.Verifier }

func (t tokens) Identify(token string) (hub.Identity, error) {
	c, err := t.v.Verify(token)
	if err != nil {
		return hub.Identity{}, tokenError(err)
	}
	return hub.Identity{User: c.Subject, Info: c.Info, Channels: c.Channels, Publish: c.Publish, Expires: c.Expires}, nil
}

func (t tokens) Grant(token string) (string, string, error) {
	c, err := t.v.VerifySubscription(token)
	if err != nil {
		return "", "", tokenError(err)
	}
	return c.Subject, c.Channel, nil
}

// tokenError is the unauthorized error a client is told for a token that
// failed: its reason (token expired, invalid signature...), never more.
func tokenError(err error) error {
	var te *auth.TokenError
	if errors.As(err, &te) {
		return protocol.Errorf(protocol.CodeUnauthorized, te.Reason)
	}
	return protocol.Errorf(protocol.CodeUnauthorized, auth.ReasonMalformed)
}

// devTokenTTL is how long a development token lives.
const devTokenTTL = time.Hour

// devToken serves GET /dev/token?user=NAME: a token signed with
// Config.DevTokenSecret that grants every channel, for the demo page and
// local development. It exists only when that secret is set.
func (s *Server) devToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeBadRequest, "use GET"))
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" || len(user) > 64 {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeBadRequest, "user must be 1 to 64 bytes: /dev/token?user=ann"))
		return
	}
	exp := time.Now().Add(devTokenTTL).Truncate(time.Second)
	token, err := auth.Sign(s.cfg.DevTokenSecret, "HS256", auth.Claims{
		Subject: user, Expires: exp, IssuedAt: time.Now(),
		Channels: []string{"*"}, Publish: []string{"*"},
	})
	if err != nil {
		protocol.WriteHTTPError(w, protocol.Errorf(protocol.CodeInternal, "cannot sign a token"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	b := append([]byte(`{"token":`), protocol.AppendString(nil, token)...)
	b = append(b, `,"user":`...)
	b = protocol.AppendString(b, user)
	b = append(b, `,"expires_at":`...)
	b = strconv.AppendInt(b, exp.Unix(), 10)
	_, _ = w.Write(append(b, "}\n"...))
}
