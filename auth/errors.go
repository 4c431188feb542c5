package auth

import (
	"errors"
	"slices"

	"github.com/golang-jwt/jwt/v5"
)

// The reasons a token is refused. They are the Reason of a TokenError and
// are sent to clients as WebSocket close reasons, so they never change.
const (
	// ReasonExpired is given for a token whose "exp" is past, beyond the
	// leeway.
	ReasonExpired = "token expired"
	// ReasonSignature is given for a token whose signature does not verify,
	// whose key is unknown, or whose algorithm the configured key does not
	// allow.
	ReasonSignature = "invalid signature"
	// ReasonNotYetValid is given for a token whose "nbf" or "iat" is in the
	// future, beyond the leeway.
	ReasonNotYetValid = "token not yet valid"
	// ReasonMalformed is given for a string that is not a JWT, or whose
	// header or claims cannot be decoded into the expected types.
	ReasonMalformed = "malformed token"
	// ReasonClaims is given for a token that lacks "sub" or "exp", has the
	// wrong "iss" or "aud", or is a subscription token without "channel".
	ReasonClaims = "invalid claims"
)

// TokenError is the error of every failed verification. Reason is one of
// the Reason constants; Err says what exactly was wrong and wraps, where
// there is one, the error of the JWT library.
type TokenError struct {
	Reason string
	Err    error
}

// Error returns "auth: " followed by the reason and, when there is one, a
// short fixed description of the fault. It never contains any part of the
// token.
func (e *TokenError) Error() string {
	if e.Err == nil {
		return "auth: " + e.Reason
	}
	return "auth: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns Err.
func (e *TokenError) Unwrap() error { return e.Err }

// ErrConfig is wrapped by every error New returns for an unusable Config.
var ErrConfig = errors.New("auth: invalid config")

// ErrClosed is returned by Start on a Verifier that is closed.
var ErrClosed = errors.New("auth: verifier closed")

// ErrStarted is returned by a second call of Start.
var ErrStarted = errors.New("auth: verifier already started")

// Errors the key functions return to the JWT parser. Their text is fixed:
// nothing from the token goes into them.
var (
	errUnknownKey = errors.New("no key for the token's kid")
	errAlgorithm  = errors.New("algorithm not allowed for the key")
	errCritical   = errors.New("unsupported critical header")
	errSubject    = errors.New("sub is missing or empty")
)

// claimTypeError reports a claim whose JSON value has the wrong type. Claim
// is one of the claim names this package decodes, never a name taken from
// the token.
type claimTypeError struct {
	claim string
	err   error
}

func (e *claimTypeError) Error() string { return "claim " + e.claim + " has the wrong type" }

func (e *claimTypeError) Unwrap() error { return e.err }

// detail is the Err of a TokenError: a fixed description that wraps the
// underlying error without repeating its text, which may quote the token.
type detail struct {
	msg string
	err error
}

func (d *detail) Error() string { return d.msg }

func (d *detail) Unwrap() error { return d.err }

func tokenError(reason, msg string, err error) *TokenError {
	return &TokenError{Reason: reason, Err: &detail{msg: msg, err: err}}
}

// classify turns an error of the JWT parser into a TokenError. tok is what
// the parser returned with the error (possibly nil), wc the claims it
// decoded, allowed the algorithms the parser was given.
func (v *Verifier) classify(err error, tok *jwt.Token, wc *wireClaims, allowed []string) *TokenError {
	var cte *claimTypeError
	switch {
	case errors.Is(err, errCritical):
		return tokenError(ReasonMalformed, errCritical.Error(), err)
	case errors.Is(err, errUnknownKey):
		return tokenError(ReasonSignature, errUnknownKey.Error(), err)
	case errors.Is(err, errAlgorithm):
		return tokenError(ReasonSignature, errAlgorithm.Error(), err)
	case errors.As(err, &cte):
		return tokenError(ReasonMalformed, cte.Error(), err)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return tokenError(ReasonMalformed, "not a well-formed JWT", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if tok != nil && tok.Method != nil && !slices.Contains(allowed, tok.Method.Alg()) {
			return tokenError(ReasonSignature, errAlgorithm.Error(), err)
		}
		return tokenError(ReasonSignature, "signature does not verify", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// The header names no algorithm, or one the library does not know.
		return tokenError(ReasonSignature, "algorithm missing or not supported", err)
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return v.classifyClaims(err, wc)
	}
	return tokenError(ReasonMalformed, "not a well-formed JWT", err)
}

// classifyClaims picks the reason for a token whose signature verified but
// whose claims did not validate. When several claims are wrong, a wrong or
// missing claim wins over an expired token, which wins over one not yet
// valid: a client may cure the latter two with a fresh token, not the first.
func (v *Verifier) classifyClaims(err error, wc *wireClaims) *TokenError {
	switch {
	case errors.Is(err, errSubject):
		return tokenError(ReasonClaims, errSubject.Error(), err)
	case wc.ExpiresAt == nil:
		return tokenError(ReasonClaims, "exp is missing", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer),
		errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && v.issuer != "" && wc.Issuer == "":
		return tokenError(ReasonClaims, "iss is not the expected issuer", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return tokenError(ReasonClaims, "aud does not include the expected audience", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return tokenError(ReasonExpired, "exp is past", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return tokenError(ReasonNotYetValid, "nbf is in the future", err)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return tokenError(ReasonNotYetValid, "iat is in the future", err)
	}
	return tokenError(ReasonClaims, "claims do not validate", err)
}
