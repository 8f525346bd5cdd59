package kubeproxy

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
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
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		name          string
		users, groups []string
		headers       http.Header
		wantUser      string
		wantGroups    []string
		wantErr       string
	}{
		{"no kubernetes_users impersonates the Teleport user", nil, []string{"g2", "g1"}, nil, "bot-a", []string{"g1", "g2"}, ""},
		{"the one kubernetes_users entry", []string{"alice"}, []string{"g1"}, nil, "alice", []string{"g1"}, ""},
		{"several kubernetes_users without a header", []string{"alice", "bob"}, nil, nil, "", nil, "please select a user to impersonate"},
		{"several kubernetes_users with an allowed header", []string{"alice", "bob"}, nil, h("Impersonate-User", "bob"), "bob", nil, ""},
		{"empty user header is ignored", nil, []string{"g1"}, h("Impersonate-User", "", "Impersonate-Group", "g1"), "bot-a", []string{"g1"}, ""},
		{"header user outside the allowed set", []string{"alice"}, nil, h("Impersonate-User", "root"), "", nil, `user header "root" is not allowed in roles`},
		{"the Teleport user when kubernetes_users are set", []string{"alice"}, nil, h("Impersonate-User", "bot-a"), "", nil, "is not allowed in roles"},
		{"two user headers", []string{"alice", "bob"}, nil, h("Impersonate-User", "alice", "Impersonate-User", "bob"), "", nil, "invalid user header"},
		{"header group outside the allowed set", nil, []string{"g1"}, h("Impersonate-Group", "system:masters"), "", nil, `group header "system:masters" value is not allowed`},
		{"header groups within the allowed set", nil, []string{"g1", "g2"}, h("Impersonate-Group", "g2"), "bot-a", []string{"g2"}, ""},
		{"other impersonation headers are refused", nil, []string{"g1"}, h("Impersonate-Uid", "1"), "", nil, `unsupported impersonation header "Impersonate-Uid"`},
		{"no kubernetes users nor groups", nil, nil, nil, "", nil, "does not allow Kubernetes access"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			user, groups, err := ImpersonationFor("bot-a", tc.users, tc.groups, tc.headers)
			if tc.wantErr != "" {
				wantKind := trail.AccessDenied
				if strings.Contains(tc.wantErr, "does not allow Kubernetes access") {
					wantKind = trail.NotFound
				}
				if !trail.Is(err, wantKind) || !strings.Contains(err.Error(), tc.wantErr) {
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

func TestCheckClusterAllowed(t *testing.T) {
	d := &state.Data{
		ClusterName: "root",
		Roles: map[string]*state.Role{
			"prod": {Name: "prod", Allow: state.Conditions{KubernetesLabels: map[string][]string{"env": {"prod"}}}},
			"no-eu": {Name: "no-eu", Allow: state.Conditions{KubernetesLabels: map[string][]string{"*": {"*"}}},
				Deny: state.Conditions{KubernetesLabels: map[string][]string{"region": {"eu"}}}},
		},
		Clusters: map[string]*state.KubeCluster{
			"prod-1":  {Name: "prod-1", Labels: map[string]string{"env": "prod"}},
			"dev-1":   {Name: "dev-1", Labels: map[string]string{"env": "dev"}},
			"prod-eu": {Name: "prod-eu", Labels: map[string]string{"env": "prod"}, DynamicLabels: map[string]state.DynamicLabel{"region": {Result: "eu"}}},
		},
	}
	user := func(roles ...string) *auth.Caller {
		return &auth.Caller{Identity: pki.Identity{Username: "bot-argocd", Roles: roles}}
	}
	cases := []struct {
		name, teleportCluster, kube string
		caller                      *auth.Caller
		status                      int // 0: allowed
		message                     string
	}{
		{"cluster the roles see", "root", "prod-1", user("prod"), 0, ""},
		{"another Teleport cluster", "leaf", "prod-1", user("prod"), 404, `cluster "leaf" is not found`},
		{"host certificate", "root", "prod-1", &auth.Caller{Host: true}, 403, "[00] access denied"},
		{"cluster the roles do not see", "root", "dev-1", user("prod"), 403, `kubernetes cluster "dev-1" not found`},
		{"cluster that does not exist", "root", "ghost", user("prod"), 403, `kubernetes cluster "ghost" not found`},
		{"cluster denied by a dynamic label", "root", "prod-eu", user("no-eu"), 403, `kubernetes cluster "prod-eu" not found`},
		{"caller without roles", "root", "prod-1", user(), 403, `kubernetes cluster "prod-1" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cluster, _, err := checkClusterAllowed(d, tc.caller, tc.teleportCluster, tc.kube)
			if tc.status == 0 {
				if err != nil || cluster == nil || cluster.Name != tc.kube {
					t.Fatalf("want %s allowed, got %v, %v", tc.kube, cluster, err)
				}
				return
			}
			if err == nil || trail.HTTPStatus(err) != tc.status || err.Error() != tc.message {
				t.Fatalf("got %v (status %d), want %d %q", err, trail.HTTPStatus(err), tc.status, tc.message)
			}
		})
	}
}
