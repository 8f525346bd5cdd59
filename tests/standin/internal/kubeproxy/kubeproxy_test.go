package kubeproxy

import (
	"slices"
	"strings"
	"testing"

	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

func TestParsePath(t *testing.T) {
	tc, kc, rest, ok, err := ParsePath("/v1/teleport/cm9vdA/a3ViZS1jbHVzdGVyLTE/api/v1/namespaces")
	if err != nil || !ok || tc != "root" || kc != "kube-cluster-1" || rest != "/api/v1/namespaces" {
		t.Fatalf("got %q %q %q %v %v", tc, kc, rest, ok, err)
	}
	if _, _, _, ok, _ := ParsePath("/api/v1/namespaces"); ok {
		t.Fatal("a plain API path counts as path routing")
	}
	if _, _, _, _, err := ParsePath("/v1/teleport/cm9vdA==/a3ViZQ/api"); err == nil || trail.HTTPStatus(err) != 500 {
		t.Fatalf("padded base64: %v, want an error of no kind (500)", err)
	}
	if _, _, _, _, err := ParsePath("/v1/teleport/cm9vdA"); !trail.Is(err, trail.BadParameter) {
		t.Fatalf("path without a kube cluster accepted: %v", err)
	}
}

func TestCheckRouteNotOverwritten(t *testing.T) {
	cases := []struct {
		name             string
		route, kube      string
		pathTC, pathKube string
		refused          bool
	}{
		{"route equal to the path", "root", "", "root", "kc", false},
		{"no route in the certificate", "", "", "root", "kc", false},
		{"route to another Teleport cluster", "root", "", "leaf", "kc", true},
		{"certificate for another kube cluster", "root", "other", "root", "kc", true},
		{"certificate for this kube cluster", "root", "kc", "root", "kc", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &auth.Caller{Identity: pki.Identity{RouteToCluster: tc.route, KubernetesCluster: tc.kube}}
			err := checkRouteNotOverwritten(c, tc.pathTC, tc.pathKube)
			if tc.refused != (err != nil) {
				t.Fatalf("got %v, refused want %v", err, tc.refused)
			}
			if err != nil && (err.Error() != "existing route in identity may not be overwritten" || trail.HTTPStatus(err) != 403) {
				t.Fatalf("wrong refusal: %v", err)
			}
		})
	}
}

func TestImpersonationFor(t *testing.T) {
	cases := []struct {
		name                string
		users, groups       []string
		askUsers, askGroups []string
		wantUser            string
		wantGroups          []string
		wantErr             string
	}{
		{"no kubernetes_users impersonates the Teleport user", nil, []string{"g1", "g2"}, nil, nil, "bot-a", []string{"g1", "g2"}, ""},
		{"the one kubernetes_users entry", []string{"alice"}, []string{"g1"}, nil, nil, "alice", []string{"g1"}, ""},
		{"several kubernetes_users without a header", []string{"alice", "bob"}, nil, nil, nil, "", nil, "please select a user to impersonate"},
		{"several kubernetes_users with an allowed header", []string{"alice", "bob"}, nil, []string{"bob"}, nil, "bob", nil, ""},
		{"header user outside the allowed set", []string{"alice"}, nil, []string{"root"}, nil, "", nil, `user header "root" is not allowed`},
		{"header group outside the allowed set", nil, []string{"g1"}, nil, []string{"system:masters"}, "", nil, `group header "system:masters"`},
		{"header groups within the allowed set", nil, []string{"g1", "g2"}, nil, []string{"g2"}, "bot-a", []string{"g2"}, ""},
		{"no kubernetes users nor groups", nil, nil, nil, nil, "", nil, "does not allow Kubernetes access"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, groups, err := ImpersonationFor("bot-a", tc.users, tc.groups, tc.askUsers, tc.askGroups)
			if tc.wantErr != "" {
				if !trail.Is(err, trail.AccessDenied) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want AccessDenied %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || user != tc.wantUser || !slices.Equal(groups, tc.wantGroups) {
				t.Fatalf("got %q %v %v; want %q %v", user, groups, err, tc.wantUser, tc.wantGroups)
			}
		})
	}
}
