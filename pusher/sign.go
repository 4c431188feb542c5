package pusher

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sign returns the hex HMAC-SHA256 of msg under secret: Pusher's signature
// of channel authorizations, sign-ins, HTTP API requests and webhooks.
func sign(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

// equalSignature compares two hex signatures in constant time.
func equalSignature(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }

// checkAuth checks an auth string "key:signature" against the signature
// of msg by app. It says what is wrong, for the client.
func (app *App) checkAuth(auth, msg string) error {
	key, sig, ok := strings.Cut(auth, ":")
	switch {
	case auth == "":
		return errors.New("auth is missing")
	case !ok:
		return errors.New("auth must be key:signature")
	case key != app.Key:
		return errors.New("auth is for another app key")
	case !equalSignature(sig, sign(app.Secret, msg)):
		return errors.New("invalid signature")
	}
	return nil
}

// channelAuthMessage is what a channel authorization signs:
// socket_id:channel for a private channel, socket_id:channel:channel_data
// for a presence one.
func channelAuthMessage(socketID, channel, channelData string) string {
	if channelData != "" {
		return socketID + ":" + channel + ":" + channelData
	}
	return socketID + ":" + channel
}

// signinMessage is what a user sign-in signs.
func signinMessage(socketID, userData string) string { return socketID + "::user::" + userData }

// requestWindow is how far from the server's clock a signed HTTP API
// request's auth_timestamp may be.
const requestWindow = 600 * time.Second

// checkRequest checks the signature of an HTTP API request: auth_key is
// the app's, auth_timestamp within requestWindow of now, auth_version 1.0,
// body_md5 the body's (when there is one), and auth_signature the HMAC of
// the method, the path and the other parameters sorted by name. It says
// what is wrong.
func (app *App) checkRequest(method, path string, query url.Values, body []byte, now time.Time) error {
	if query.Get("auth_key") != app.Key {
		return errors.New("auth_key is missing or not this app's key")
	}
	ts, err := strconv.ParseInt(query.Get("auth_timestamp"), 10, 64)
	if err != nil {
		return errors.New("auth_timestamp is missing or not a number")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > requestWindow || d < -requestWindow {
		return errors.New("auth_timestamp is more than 600 s from the server's time: check the clock, or this is a replay")
	}
	if v := query.Get("auth_version"); v != "1.0" {
		return errors.New("auth_version must be 1.0")
	}
	if len(body) > 0 {
		sum := md5.Sum(body)
		if query.Get("body_md5") != hex.EncodeToString(sum[:]) {
			return errors.New("body_md5 is not the body's MD5")
		}
	}
	want := sign(app.Secret, requestMessage(method, path, query))
	if !equalSignature(query.Get("auth_signature"), want) {
		return errors.New("invalid auth_signature")
	}
	return nil
}

// requestMessage is what an HTTP API request's signature covers: the
// method, the path, and the parameters but auth_signature, with lowercase
// names, sorted, joined as a query string without escaping.
func requestMessage(method, path string, query url.Values) string {
	keys := make([]string, 0, len(query))
	for k := range query {
		if k != "auth_signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(strings.ToUpper(method) + "\n" + path + "\n")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(strings.ToLower(k) + "=" + query.Get(k))
	}
	return b.String()
}
