package pusher

import (
	"net/url"
	"testing"
	"time"
)

// The worked examples of Pusher's documentation (auth signatures, HTTP API
// reference), byte for byte: a client or SDK that signs by the
// specification and this server agree.
var docApp = &App{ID: "3", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}

func TestDocumentedChannelSignatures(t *testing.T) {
	for _, tc := range []struct {
		name, msg, want string
	}{
		{"private channel", channelAuthMessage("1234.1234", "private-foobar", ""),
			"58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"},
		{"presence channel", channelAuthMessage("1234.1234", "presence-foobar", `{"user_id":10,"user_info":{"name":"Mr. Pusher"}}`),
			"afaed3695da2ffd16931f457e338e6c9f2921fa133ce7dac49f529792be6304c"},
		{"user sign-in", signinMessage("1234.1234", `{"id":"12345"}`),
			"4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"},
	} {
		if got := sign(docApp.Secret, tc.msg); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
		if err := docApp.checkAuth(docApp.Key+":"+tc.want, tc.msg); err != nil {
			t.Errorf("%s: the documented auth is refused: %v", tc.name, err)
		}
	}
	for _, bad := range []string{"", "278d425bdf160c739803", "wrongkey:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
		"278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a5"} {
		if docApp.checkAuth(bad, channelAuthMessage("1234.1234", "private-foobar", "")) == nil {
			t.Errorf("auth %q accepted", bad)
		}
	}
	// The signature of another socket does not open this one.
	if docApp.checkAuth(docApp.Key+":58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4",
		channelAuthMessage("1234.5678", "private-foobar", "")) == nil {
		t.Error("a signature for socket 1234.1234 opened 1234.5678")
	}
}

// The HTTP API reference's worked example: POST /apps/3/events.
func TestDocumentedRequestSignature(t *testing.T) {
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	q := url.Values{
		"auth_key":       {"278d425bdf160c739803"},
		"auth_timestamp": {"1353088179"},
		"auth_version":   {"1.0"},
		"body_md5":       {"ec365a775a4cd0599faeb73354201b6f"},
		"auth_signature": {"da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"},
	}
	at := time.Unix(1353088179, 0)
	if err := docApp.checkRequest("POST", "/apps/3/events", q, body, at.Add(time.Minute)); err != nil {
		t.Fatalf("the documented request: %v", err)
	}
	for name, mutate := range map[string]func(q url.Values, b []byte) (url.Values, []byte, time.Time){
		"stale":       func(q url.Values, b []byte) (url.Values, []byte, time.Time) { return q, b, at.Add(601 * time.Second) },
		"from future": func(q url.Values, b []byte) (url.Values, []byte, time.Time) { return q, b, at.Add(-601 * time.Second) },
		"other body": func(q url.Values, b []byte) (url.Values, []byte, time.Time) {
			return q, []byte(`{"name":"bar","channels":["project-3"],"data":"{}"}`), at
		},
		"other key": func(q url.Values, b []byte) (url.Values, []byte, time.Time) {
			c := url.Values{}
			for k, v := range q {
				c[k] = v
			}
			c.Set("auth_key", "nope")
			return c, b, at
		},
		"bad signature": func(q url.Values, b []byte) (url.Values, []byte, time.Time) {
			c := url.Values{}
			for k, v := range q {
				c[k] = v
			}
			c.Set("auth_signature", "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6d")
			return c, b, at
		},
	} {
		q2, b2, now := mutate(q, body)
		if err := docApp.checkRequest("POST", "/apps/3/events", q2, b2, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestChannelKinds(t *testing.T) {
	for name, want := range map[string]channelKind{
		"my-channel":                {},
		"private-x":                 {private: true},
		"presence-room":             {presence: true},
		"private-encrypted-x":       {private: true, encrypted: true},
		"cache-x":                   {cache: true},
		"private-cache-x":           {private: true, cache: true},
		"presence-cache-x":          {presence: true, cache: true},
		"private-encrypted-cache-x": {private: true, encrypted: true, cache: true},
		"privatex":                  {},
	} {
		if got := kindOf(name); got != want {
			t.Errorf("%s: %+v, want %+v", name, got, want)
		}
	}
	for _, good := range []string{"a", "my-channel_1=@,.;"} {
		if !validChannel(good) {
			t.Errorf("%q refused", good)
		}
	}
	for _, bad := range []string{"", "has space", "colon:x", "#server-to-user-1", string(make([]byte, 165))} {
		if validChannel(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
