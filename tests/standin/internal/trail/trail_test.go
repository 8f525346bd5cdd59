package trail

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
)

// The error kinds reach clients as the codes of TELEPORT.md §8 and the statuses of §2.
func TestErrorKindsToCodesAndStatuses(t *testing.T) {
	cases := []struct {
		kind   Kind
		code   codes.Code
		status int
	}{
		{AccessDenied, codes.PermissionDenied, http.StatusForbidden},
		{NotFound, codes.NotFound, http.StatusNotFound},
		{BadParameter, codes.InvalidArgument, http.StatusBadRequest},
		{AlreadyExists, codes.AlreadyExists, http.StatusConflict},
		{CompareFailed, codes.FailedPrecondition, http.StatusPreconditionFailed},
		{ConnectionProblem, codes.Unavailable, http.StatusGatewayTimeout},
		{LimitExceeded, codes.ResourceExhausted, http.StatusTooManyRequests},
		{NotImplemented, codes.Unimplemented, http.StatusNotImplemented},
		{Unknown, codes.Unknown, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			err := Errorf(tc.kind, "boom")
			if GRPCCode(err) != tc.code || HTTPStatus(err) != tc.status {
				t.Fatalf("%v -> %v/%d, want %v/%d", tc.kind, GRPCCode(err), HTTPStatus(err), tc.code, tc.status)
			}
			if got := Wrap(err, "context"); KindOf(got) != tc.kind || got.Error() != "context: boom" {
				t.Fatalf("Wrap lost the kind or message: %v", got)
			}
		})
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{
		"AccessDenied": AccessDenied, "PERMISSION_DENIED": AccessDenied, "UNAVAILABLE": ConnectionProblem,
		"connectionproblem": ConnectionProblem, "FailedPrecondition": CompareFailed,
	} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ParseKind("nonsense"); err == nil {
		t.Error("ParseKind accepted nonsense")
	}
}
