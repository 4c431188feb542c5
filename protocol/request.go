package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// The operations a native client may request.
const (
	OpSubscribe   = "subscribe"
	OpUnsubscribe = "unsubscribe"
	OpPublish     = "publish"
	OpPresence    = "presence"
	OpHistory     = "history"
	OpPing        = "ping"
	OpAuth        = "auth"
	OpRefresh     = "refresh"
)

// MaxTokenLen is the longest token a request may carry.
const MaxTokenLen = 16 << 10

// Position is a place in a channel's history, as carried on the wire.
type Position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// Request is one decoded client request. Fields an op does not use are zero.
type Request struct {
	// ID is the client's positive request id; replies carry it back.
	ID uint64
	// Op is one of the Op constants.
	Op string
	// Channel is set, and valid, for every op but ping.
	Channel string
	// Data is the JSON value to publish (publish only). It does not alias
	// the decoded frame.
	Data json.RawMessage
	// Since asks subscribe to recover the messages after this position.
	Since *Position
	// Limit is history's limit; -1 when the request did not give one.
	Limit int
	// IdempotencyKey makes a publish happen at most once per key and
	// channel (for a few minutes): a retry with the same key after an
	// uncertain failure cannot publish twice.
	IdempotencyKey string
	// Token is the JWT of auth and refresh, and a subscription token on
	// subscribe (optional there).
	Token string
}

// MaxIdempotencyKeyLen is the longest idempotency key accepted.
const MaxIdempotencyKeyLen = 128

// wireRequest is the JSON shape of a request; ID stays raw so that a
// non-integer id is told apart from a missing one.
type wireRequest struct {
	ID      json.RawMessage `json:"id"`
	Op      string          `json:"op"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	Since   *Position       `json:"since"`
	Limit   *int            `json:"limit"`
	IdemKey string          `json:"idempotency_key"`
	Token   string          `json:"token"`
}

// DecodeRequest decodes one native frame. On failure it returns the request
// as far as it was understood (ID is 0 when the frame had no usable id) and an
// Error with code bad_request; the reply to send carries req.ID.
func DecodeRequest(frame []byte) (req Request, perr *Error) {
	req.Limit = -1
	trimmed := bytes.TrimLeft(frame, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return req, Errorf(CodeBadRequest, "a request must be a JSON object")
	}
	var w wireRequest
	var err error
	if !decodeFast(trimmed, &w) {
		w = wireRequest{}
		err = json.Unmarshal(frame, &w)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) || (err != nil && len(w.ID) == 0) {
		return req, Errorf(CodeBadRequest, "a request must be a JSON object")
	}
	id, ok := parseID(w.ID)
	if !ok {
		return req, Errorf(CodeBadRequest, "id must be a positive integer")
	}
	req.ID = id
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return req, Errorf(CodeBadRequest, "field "+strconv.Quote(typeErr.Field)+" has the wrong type")
	} else if err != nil {
		return req, Errorf(CodeBadRequest, "malformed request")
	}
	req.Op = w.Op
	if len(w.Token) > MaxTokenLen {
		return req, Errorf(CodeBadRequest, "token is longer than 16 KiB")
	}
	switch w.Op {
	case OpPing:
		return req, nil
	case OpAuth, OpRefresh:
		if w.Token == "" {
			return req, Errorf(CodeBadRequest, "token is missing")
		}
		req.Token = w.Token
		return req, nil
	case OpSubscribe, OpUnsubscribe, OpPublish, OpPresence, OpHistory:
	case "":
		return req, Errorf(CodeBadRequest, "op is missing")
	default:
		return req, Errorf(CodeBadRequest, "unknown op "+strconv.Quote(w.Op))
	}
	if w.Channel == "" {
		return req, Errorf(CodeBadRequest, "channel is missing")
	}
	if err := ValidateChannel(w.Channel); err != nil {
		return req, Errorf(CodeBadRequest, channelMessage(err))
	}
	req.Channel = w.Channel
	switch w.Op {
	case OpPublish:
		if len(w.Data) == 0 {
			return req, Errorf(CodeBadRequest, "data is missing")
		}
		if len(w.IdemKey) > MaxIdempotencyKeyLen {
			return req, Errorf(CodeBadRequest, "idempotency_key is longer than 128 bytes")
		}
		req.Data = w.Data
		req.IdempotencyKey = w.IdemKey
	case OpSubscribe:
		if w.Since != nil && w.Since.Epoch == "" {
			return req, Errorf(CodeBadRequest, "since.epoch is missing")
		}
		req.Since = w.Since
		req.Token = w.Token
	case OpHistory:
		if w.Limit != nil {
			if *w.Limit < 0 {
				return req, Errorf(CodeBadRequest, "limit must not be negative")
			}
			req.Limit = *w.Limit
		}
	}
	return req, nil
}

// channelMessage turns a ValidateChannel error into a reply message.
func channelMessage(err error) string {
	switch err {
	case ErrChannelEmpty:
		return "channel is missing"
	case ErrChannelTooLong:
		return "channel name is longer than 200 characters"
	default:
		return "channel name may only use A-Z a-z 0-9 _ - = @ , . ; :"
	}
}

// ChannelError returns the bad_request Error for a channel name that
// ValidateChannel refused, or nil for a valid one.
func ChannelError(name string) *Error {
	if err := ValidateChannel(name); err != nil {
		return Errorf(CodeBadRequest, channelMessage(err))
	}
	return nil
}

// parseID accepts a JSON positive integer without sign, fraction or
// exponent that fits in 53 bits (so every JavaScript client can hold it).
func parseID(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 || raw[0] < '1' || raw[0] > '9' {
		return 0, false
	}
	id, err := strconv.ParseUint(string(raw), 10, 53)
	return id, err == nil
}
