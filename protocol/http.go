package protocol

import "net/http"

// HTTPStatus is the HTTP status that goes with the code in the HTTP API's
// answers (and in a refused WebSocket upgrade).
func (c Code) HTTPStatus() int {
	switch c {
	case CodeBadRequest:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited, CodeLimitExceeded:
		return http.StatusTooManyRequests
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// WriteHTTPError answers an HTTP request with e: its code's status and the
// body {"error":{"code":...,"message":...}}. Every HTTP error the server
// writes goes through it.
func WriteHTTPError(w http.ResponseWriter, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(e.Code.HTTPStatus())
	b := append([]byte(`{"error":{"code":`), AppendString(nil, string(e.Code))...)
	b = append(b, `,"message":`...)
	b = AppendString(b, e.Message)
	_, _ = w.Write(append(b, "}}\n"...))
}
