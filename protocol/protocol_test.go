package protocol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateChannel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		channel string
		want    error
	}{
		{"simple", "chat_messages", nil},
		{"namespaced", "chat:lobby", nil},
		{"every allowed char", "AZaz09_-=@,.;:", nil},
		{"200 chars", strings.Repeat("a", 200), nil},
		{"empty", "", ErrChannelEmpty},
		{"201 chars", strings.Repeat("a", 201), ErrChannelTooLong},
		{"space", "a b", ErrChannelChars},
		{"slash", "a/b", ErrChannelChars},
		{"unicode", "café", ErrChannelChars},
		{"star", "a*", ErrChannelChars},
		{"nul", "a\x00", ErrChannelChars},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := ValidateChannel(tc.channel); got != tc.want {
				t.Errorf("ValidateChannel(%q) = %v, want %v", tc.channel, got, tc.want)
			}
		})
	}
}

func TestNamespace(t *testing.T) {
	t.Parallel()
	for ch, want := range map[string]string{"chat:lobby": "chat", "lobby": "", "a:b:c": "a", ":x": ""} {
		if got := Namespace(ch); got != want {
			t.Errorf("Namespace(%q) = %q, want %q", ch, got, want)
		}
	}
}

func TestDecodeRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		frame   string
		wantID  uint64
		wantErr string // the error message, "" for success
		check   func(t *testing.T, r Request)
	}{
		{"ping", `{"id":1,"op":"ping"}`, 1, "", nil},
		{"subscribe", `{"id":7,"op":"subscribe","channel":"chat:lobby"}`, 7, "", func(t *testing.T, r Request) {
			if r.Channel != "chat:lobby" || r.Since != nil {
				t.Errorf("got %+v", r)
			}
		}},
		{"subscribe since", `{"id":3,"op":"subscribe","channel":"c","since":{"epoch":"k3x9","offset":42}}`, 3, "", func(t *testing.T, r Request) {
			if r.Since == nil || *r.Since != (Position{"k3x9", 42}) {
				t.Errorf("since = %+v", r.Since)
			}
		}},
		{"publish object", `{"id":8,"op":"publish","channel":"c","data":{"text":"hi"}}`, 8, "", func(t *testing.T, r Request) {
			if string(r.Data) != `{"text":"hi"}` {
				t.Errorf("data = %s", r.Data)
			}
		}},
		{"publish null", `{"id":8,"op":"publish","channel":"c","data":null}`, 8, "", func(t *testing.T, r Request) {
			if string(r.Data) != `null` {
				t.Errorf("data = %s", r.Data)
			}
		}},
		{"history limit", `{"id":11,"op":"history","channel":"c","limit":50}`, 11, "", func(t *testing.T, r Request) {
			if r.Limit != 50 {
				t.Errorf("limit = %d", r.Limit)
			}
		}},
		{"history no limit", `{"id":11,"op":"history","channel":"c"}`, 11, "", func(t *testing.T, r Request) {
			if r.Limit != -1 {
				t.Errorf("limit = %d, want -1", r.Limit)
			}
		}},
		{"unknown fields ignored", `{"id":2,"op":"ping","future":true}`, 2, "", nil},
		{"not json", `hello`, 0, "a request must be a JSON object", nil},
		{"array", `[1,2]`, 0, "a request must be a JSON object", nil},
		{"truncated", `{"id":1,"op":"pi`, 0, "a request must be a JSON object", nil},
		{"no id", `{"op":"ping"}`, 0, "id must be a positive integer", nil},
		{"zero id", `{"id":0,"op":"ping"}`, 0, "id must be a positive integer", nil},
		{"negative id", `{"id":-1,"op":"ping"}`, 0, "id must be a positive integer", nil},
		{"fraction id", `{"id":1.5,"op":"ping"}`, 0, "id must be a positive integer", nil},
		{"string id", `{"id":"1","op":"ping"}`, 0, "id must be a positive integer", nil},
		{"huge id", `{"id":99999999999999999999,"op":"ping"}`, 0, "id must be a positive integer", nil},
		{"missing op", `{"id":4}`, 4, "op is missing", nil},
		{"unknown op", `{"id":4,"op":"dance"}`, 4, `unknown op "dance"`, nil},
		{"op wrong type", `{"id":4,"op":5}`, 4, `field "op" has the wrong type`, nil},
		{"missing channel", `{"id":5,"op":"subscribe"}`, 5, "channel is missing", nil},
		{"bad channel", `{"id":5,"op":"publish","channel":"a b","data":1}`, 5, "channel name may only use A-Z a-z 0-9 _ - = @ , . ; :", nil},
		{"long channel", `{"id":5,"op":"subscribe","channel":"` + strings.Repeat("x", 201) + `"}`, 5, "channel name is longer than 200 characters", nil},
		{"missing data", `{"id":6,"op":"publish","channel":"c"}`, 6, "data is missing", nil},
		{"since without epoch", `{"id":6,"op":"subscribe","channel":"c","since":{"offset":3}}`, 6, "since.epoch is missing", nil},
		{"negative limit", `{"id":6,"op":"history","channel":"c","limit":-2}`, 6, "limit must not be negative", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := DecodeRequest([]byte(tc.frame))
			if r.ID != tc.wantID {
				t.Errorf("id = %d, want %d", r.ID, tc.wantID)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tc.wantErr)
			case err != nil:
				if err.Code != CodeBadRequest || err.Message != tc.wantErr {
					t.Errorf("error = %v, want bad_request: %s", err, tc.wantErr)
				}
			}
			if tc.check != nil && err == nil {
				tc.check(t, r)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()
	yes := true
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"ok", AppendOK(nil, 9), `{"id":9,"ok":true}`},
		{"position", AppendPositionReply(nil, 7, Position{"k3x9", 41}, nil), `{"id":7,"ok":true,"epoch":"k3x9","offset":41}`},
		{"recovered", AppendPositionReply(nil, 3, Position{"e", 45}, &yes), `{"id":3,"ok":true,"epoch":"e","offset":45,"recovered":true}`},
		{"no position", AppendPositionReply(nil, 8, Position{}, nil), `{"id":8,"ok":true}`},
		{"error", AppendError(nil, 8, Errorf(CodeForbidden, `no "way"`)), `{"id":8,"ok":false,"error":{"code":"forbidden","message":"no \"way\""}}`},
		{"message", AppendMessage(nil, "c", []byte(`{"a":1}`), false, Position{"e", 2}, 0), `{"op":"message","channel":"c","data":{"a":1},"epoch":"e","offset":2}`},
		{"message with time", AppendMessage(nil, "c", []byte(`"hi"`), false, Position{}, 1764950400123), `{"op":"message","channel":"c","data":"hi","ts":1764950400123}`},
		{"binary message", AppendMessage(nil, "c", []byte{0, 0xff, '"'}, true, Position{}, 0), `{"op":"message","channel":"c","data":"AP8i","encoding":"base64"}`},
		{"empty binary message", AppendMessage(nil, "c", nil, true, Position{"e", 1}, 7), `{"op":"message","channel":"c","data":"","encoding":"base64","epoch":"e","offset":1,"ts":7}`},
		{"history", AppendHistoryReply(nil, 4, Position{"e", 2}, 2, func(i int) (uint64, []byte, bool, int64) {
			if i == 0 {
				return 1, []byte(`"text"`), false, 1764950400123
			}
			return 2, []byte("\x01\x02\x03"), true, 0
		}), `{"id":4,"ok":true,"epoch":"e","offset":2,"messages":[{"offset":1,"data":"text","ts":1764950400123},{"offset":2,"data":"AQID","encoding":"base64"}]}`},
		{"welcome", AppendWelcome(nil, 1, "c1", "n1", 25000), `{"op":"welcome","version":1,"client":"c1","node":"n1","ping_interval_ms":25000}`},
	}
	for _, tc := range tests {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, tc.got, tc.want)
		}
		if !json.Valid(tc.got) {
			t.Errorf("%s: not valid JSON: %s", tc.name, tc.got)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "new\nline\t\r", "\x00\x01\x1f", "héllo wörld ✓", "<script>&", "bad\xffutf8", "\u2028"} {
		b := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Errorf("AppendString(%q) = %s: %v", s, b, err)
			continue
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if back != want {
			t.Errorf("round trip of %q gave %q", s, back)
		}
	}
}

// FuzzDecodeRequest checks that no frame crashes the decoder, that a
// refused frame always gets bad_request, and that an accepted request is
// consistent with the contract.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"ping"}`, `{"id":7,"op":"subscribe","channel":"chat:lobby","since":{"epoch":"e","offset":4}}`,
		`{"id":8,"op":"publish","channel":"c","data":{"text":"hi"}}`, `{"id":11,"op":"history","channel":"c","limit":50}`,
		`{"id":1e3,"op":"ping"}`, `{"id":1,"op":"publish","channel":"c","data":}`, `{}`, `[]`, `null`, `"x"`, ``, `{"id":1,"op":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r, err := DecodeRequest(frame)
		if err != nil {
			if err.Code != CodeBadRequest || err.Message == "" {
				t.Fatalf("refusal %v is not a bad_request with a message", err)
			}
			return
		}
		if r.ID == 0 || r.ID >= 1<<53 {
			t.Fatalf("accepted id %d", r.ID)
		}
		if r.Op != OpPing && ValidateChannel(r.Channel) != nil {
			t.Fatalf("accepted bad channel %q", r.Channel)
		}
		if r.Op == OpPublish && !json.Valid(r.Data) {
			t.Fatalf("accepted invalid data %q", r.Data)
		}
	})
}

// FuzzValidateChannel checks the channel rules against a direct reading of
// them, and that every valid name is safe to put in JSON unescaped.
func FuzzValidateChannel(f *testing.F) {
	for _, s := range []string{"chat:lobby", "", "a b", strings.Repeat("z", 200), strings.Repeat("z", 201), "é", "a\"b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateChannel(name)
		ok := name != "" && len(name) <= 200 && utf8.ValidString(name) &&
			strings.Trim(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-=@,.;:") == ""
		if (err == nil) != ok {
			t.Fatalf("ValidateChannel(%q) = %v, rules say valid=%v", name, err, ok)
		}
		if err == nil && string(AppendString(nil, name)) != `"`+name+`"` {
			t.Fatalf("valid name %q needs escaping", name)
		}
	})
}

func TestDecodeIdempotencyKey(t *testing.T) {
	t.Parallel()
	r, err := DecodeRequest([]byte(`{"id":1,"op":"publish","channel":"c","data":1,"idempotency_key":"k-1"}`))
	if err != nil || r.IdempotencyKey != "k-1" {
		t.Fatalf("%+v %v", r, err)
	}
	_, err = DecodeRequest([]byte(`{"id":1,"op":"publish","channel":"c","data":1,"idempotency_key":"` + strings.Repeat("k", 129) + `"}`))
	if err == nil || err.Message != "idempotency_key is longer than 128 bytes" {
		t.Fatalf("long key: %v", err)
	}
}

// FuzzDecodeFast checks the fast path against encoding/json: wherever it
// accepts a frame, json.Unmarshal accepts it too and makes the same
// wireRequest of it.
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"id":1,"op":"ping"}`, `{"id":8,"op":"publish","channel":"c","data":{"text":"hi \"x\" ]}"}}`,
		` { "id" : 12 , "op" : "publish" , "channel" : "a:b" , "data" : 12.5e3 , "idempotency_key" : "k" } `,
		`{"id":3,"op":"auth","token":"a.b.c"}`, `{"id":4,"op":"publish","channel":"c","data":[1,{"a":[]}],"data":2}`,
		`{"id":5,"op":"publish","channel":"c","data":null}`, `{"id":6,"op":"publish","channel":"c","data":tru}`,
		`{"id":7,"op":"subscribe","channel":"c",}`, `{"id":01,"op":"ping"}`, `{"ID":1,"op":"ping"}`, `{}`, `{"id":1}x`,
		`{"id":9,"op":"publish","channel":"c","data":"\u00e9"}`, `{"id":10,"op":"publish","channel":"c","data":{"a":1}  }`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var fast wireRequest
		if !decodeFast(frame, &fast) {
			return
		}
		var slow wireRequest
		if err := json.Unmarshal(frame, &slow); err != nil {
			t.Fatalf("fast path accepted %q, encoding/json refused it: %v", frame, err)
		}
		if !bytes.Equal(fast.ID, slow.ID) || fast.Op != slow.Op || fast.Channel != slow.Channel || !bytes.Equal(fast.Data, slow.Data) ||
			fast.IdemKey != slow.IdemKey || fast.Token != slow.Token || slow.Since != nil || slow.Limit != nil {
			t.Fatalf("%q: fast path made %+v, encoding/json %+v", frame, fast, slow)
		}
		if len(fast.Data) > 0 {
			// The data is a copy: the frame's buffer is the reader's.
			was := fast.Data[0]
			for i := range frame {
				frame[i] ^= 0xff
			}
			if fast.Data[0] != was {
				t.Fatalf("data aliases the frame")
			}
		}
	})
}

// The fast path takes the requests clients send all the time; what it
// declines goes to encoding/json, so a fast path that declined everything
// would pass FuzzDecodeFast and save nothing.
func TestDecodeFastTakesCommonRequests(t *testing.T) {
	for _, s := range []string{
		`{"id":1,"op":"ping"}`,
		`{"id":2,"op":"subscribe","channel":"chat:lobby"}`,
		`{"id":3,"op":"subscribe","channel":"private-x","token":"eyJ.eyJ.sig"}`,
		`{"id":4,"op":"unsubscribe","channel":"chat:lobby"}`,
		`{"id":5,"op":"publish","channel":"chat:lobby","data":{"text":"h\u00e9llo \"you\""},"idempotency_key":"k-1"}`,
		`{"id":6,"op":"presence","channel":"chat:lobby"}`,
		`{"id":7,"op":"history","channel":"chat:lobby"}`,
		`{"id":8,"op":"auth","token":"eyJ.eyJ.sig"}`,
		"{\n  \"id\": 9,\n  \"op\": \"publish\",\n  \"channel\": \"c\",\n  \"data\": [1, 2.5, true, null]\n}\n",
	} {
		var w wireRequest
		if !decodeFast([]byte(s), &w) {
			t.Errorf("fast path declined %s", s)
		}
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	frame := []byte(`{"id":123,"op":"publish","channel":"bench-room-42","data":{"seq":123456,"t":1765000000000000000,"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}`)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeRequest(frame); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var w wireRequest
			if err := json.Unmarshal(frame, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
