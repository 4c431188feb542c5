// Package auth verifies the JSON Web Tokens that clients present when they
// connect and when they subscribe to a channel.
//
// # Keys and algorithms
//
// A Verifier is configured with exactly one key source: an HMAC secret, a
// PEM-encoded public key (or certificate), or the URL of a JWKS document.
// The algorithms a token may use follow from that key and from nothing else:
//
//   - an HMAC secret accepts HS256, HS384 and HS512;
//   - an RSA key accepts RS256, RS384, RS512, PS256, PS384 and PS512;
//   - an EC key accepts the one algorithm of its curve: ES256 for P-256,
//     ES384 for P-384, ES512 for P-521;
//   - an Ed25519 key accepts EdDSA;
//   - a JWKS accepts the asymmetric algorithms above, and each key in it
//     only the algorithms its type, curve and "alg" member allow.
//
// The token's "alg" header is checked twice: by the parser against the
// allowed set, and again against the type of the key selected for it. A
// token with "alg": "none", or one signed with HMAC using a public key's
// bytes as the secret, is rejected with ReasonSignature.
//
// # Claims
//
// Verify requires "exp" and a non-empty "sub", honours "nbf" and "iat" with
// Config.Leeway of clock skew, and checks "iss" and "aud" when they are
// configured. It also decodes the switchboard claims "channels", "publish",
// "info" and "channel" (see Claims). VerifySubscription additionally
// requires "channel". Claim names are matched exactly (case-sensitively),
// and a claim whose value is JSON null counts as absent.
//
// Every verification failure is a *TokenError whose Reason is one of the
// Reason constants; these strings are meant to be sent to the client as the
// WebSocket close reason. The text of a token is never logged and never
// appears in an error message.
//
// # JWKS
//
// With Config.JWKSURL, Start fetches the key set and starts a refresher
// goroutine that fetches it again every Config.JWKSRefresh. A failed fetch
// keeps the last good key set and is retried with a growing delay. A token
// whose "kid" is not in the set may cause one fetch on the spot, at most
// once every 30 seconds, so that a newly published key is found quickly
// while a stream of forged "kid" values cannot make the server hammer the
// JWKS URL.
//
// # Concurrency
//
// A Verifier is safe for concurrent use: Verify and VerifySubscription may
// be called from any number of goroutines, also while the key set is being
// refreshed. Start may be called once (and again only if it failed because
// its context ended); Close may be called any number of times, from any
// goroutine, with or without Start, and returns when the refresher
// goroutine has ended. Verify keeps working after Close with the
// keys it holds, but no longer fetches the JWKS.
package auth
