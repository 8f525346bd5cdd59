// Package trail holds the error kinds Teleport's Auth and proxy answer with, and how each kind
// reaches a client: as a gRPC status code (TELEPORT.md §8) or an HTTP status (§2).
package trail

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/grpc/codes"
)

// Kind is the class of an error, as Teleport's error kinds classify them.
type Kind int

// The error kinds. Unknown is any error not created with one of the constructors below.
const (
	Unknown Kind = iota
	AccessDenied
	NotFound
	BadParameter
	AlreadyExists
	CompareFailed
	ConnectionProblem
	LimitExceeded
	NotImplemented
)

var kindNames = map[Kind]string{
	Unknown:           "Unknown",
	AccessDenied:      "AccessDenied",
	NotFound:          "NotFound",
	BadParameter:      "BadParameter",
	AlreadyExists:     "AlreadyExists",
	CompareFailed:     "CompareFailed",
	ConnectionProblem: "ConnectionProblem",
	LimitExceeded:     "LimitExceeded",
	NotImplemented:    "NotImplemented",
}

func (k Kind) String() string { return kindNames[k] }

// Error is an error of a known kind; Message is what the client is shown.
type Error struct {
	Kind    Kind
	Message string
}

func (e *Error) Error() string { return e.Message }

func newf(kind Kind, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Errorf makes an error of the given kind.
func Errorf(kind Kind, format string, args ...any) error { return newf(kind, format, args...) }

// AccessDeniedf makes an AccessDenied error.
func AccessDeniedf(format string, args ...any) error { return newf(AccessDenied, format, args...) }

// NotFoundf makes a NotFound error.
func NotFoundf(format string, args ...any) error { return newf(NotFound, format, args...) }

// BadParameterf makes a BadParameter error.
func BadParameterf(format string, args ...any) error { return newf(BadParameter, format, args...) }

// AlreadyExistsf makes an AlreadyExists error.
func AlreadyExistsf(format string, args ...any) error { return newf(AlreadyExists, format, args...) }

// Wrap prefixes err's message and keeps its kind (Unknown for errors of no kind).
func Wrap(err error, message string) error {
	return &Error{Kind: KindOf(err), Message: message + ": " + err.Error()}
}

// KindOf returns the kind of err, Unknown when it has none.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unknown
}

// Is reports whether err is of the given kind.
func Is(err error, kind Kind) bool { return err != nil && KindOf(err) == kind }

var grpcCodes = map[Kind]codes.Code{
	Unknown:           codes.Unknown,
	AccessDenied:      codes.PermissionDenied,
	NotFound:          codes.NotFound,
	BadParameter:      codes.InvalidArgument,
	AlreadyExists:     codes.AlreadyExists,
	CompareFailed:     codes.FailedPrecondition,
	ConnectionProblem: codes.Unavailable,
	LimitExceeded:     codes.ResourceExhausted,
	NotImplemented:    codes.Unimplemented,
}

// GRPCCode is the status code a gRPC client sees for err (TELEPORT.md §8).
func GRPCCode(err error) codes.Code { return grpcCodes[KindOf(err)] }

var httpStatuses = map[Kind]int{
	Unknown:           http.StatusInternalServerError,
	AccessDenied:      http.StatusForbidden,
	NotFound:          http.StatusNotFound,
	BadParameter:      http.StatusBadRequest,
	AlreadyExists:     http.StatusConflict,
	CompareFailed:     http.StatusPreconditionFailed,
	ConnectionProblem: http.StatusGatewayTimeout,
	LimitExceeded:     http.StatusTooManyRequests,
	NotImplemented:    http.StatusNotImplemented,
}

// HTTPStatus is the status a web API client sees for err (TELEPORT.md §2). NotImplemented,
// which §2 does not list, answers 501 as Teleport's HTTP error writer does.
func HTTPStatus(err error) int { return httpStatuses[KindOf(err)] }

// ParseKind reads a kind by its name ("AccessDenied") or by a gRPC code name
// ("PERMISSION_DENIED", "PermissionDenied", "UNAVAILABLE"), for the admin interface.
func ParseKind(s string) (Kind, error) {
	norm := strings.ToLower(strings.ReplaceAll(s, "_", ""))
	for k, name := range kindNames {
		if strings.ToLower(name) == norm {
			return k, nil
		}
	}
	for k, code := range grpcCodes {
		if strings.ToLower(strings.ReplaceAll(code.String(), "_", "")) == norm {
			return k, nil
		}
	}
	return Unknown, fmt.Errorf("unknown error kind %q", s)
}
