package protocol

// Code is an error code of a failed request, as carried in a reply's
// error.code and in the HTTP API's error bodies.
type Code string

// The error codes of PROTOCOL.md.
const (
	CodeBadRequest    Code = "bad_request"
	CodeUnauthorized  Code = "unauthorized"
	CodeForbidden     Code = "forbidden"
	CodeNotFound      Code = "not_found"
	CodeTooLarge      Code = "too_large"
	CodeRateLimited   Code = "rate_limited"
	CodeLimitExceeded Code = "limit_exceeded"
	CodeUnavailable   Code = "unavailable"
	CodeInternal      Code = "internal"
)

// Error is a refused request: a code from the table above and a message for
// people. It is what the server sends back and what handlers return.
type Error struct {
	Code    Code
	Message string
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf is a shorthand for &Error{Code: code, Message: msg}.
func Errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// WebSocket close codes used by the server (RFC 6455 and PROTOCOL.md).
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	CloseInvalidPayload  = 1007
	ClosePolicy          = 1008
	CloseTooLarge        = 1009
	CloseInternal        = 1011
	CloseRestarting      = 1012
	CloseUnauthorized    = 4001
	CloseSlowConsumer    = 4008
	CloseRateLimited     = 4029
)
