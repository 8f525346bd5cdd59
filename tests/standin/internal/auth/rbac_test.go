package auth

import (
	"testing"

	"teleport-argocd-agent/tests/standin/internal/state"
)

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"env": "prod", "team": "payments"}
	cases := []struct {
		name     string
		selector map[string][]string
		want     bool
	}{
		{"wildcard key and value match everything", map[string][]string{"*": {"*"}}, true},
		{"wildcard key with a concrete value matches nothing", map[string][]string{"*": {"prod"}}, false},
		{"empty selector matches nothing", nil, false},
		{"equal value", map[string][]string{"env": {"prod"}}, true},
		{"one of several values", map[string][]string{"env": {"dev", "prod"}}, true},
		{"other value is refused", map[string][]string{"env": {"dev"}}, false},
		{"missing key is refused", map[string][]string{"region": {"*"}}, false},
		{"every key must match", map[string][]string{"env": {"prod"}, "team": {"web"}}, false},
		{"value wildcard", map[string][]string{"team": {"*"}}, true},
		{"glob", map[string][]string{"team": {"pay*"}}, true},
		{"regular expression", map[string][]string{"env": {"^(prod|staging)$"}}, true},
		{"regular expression not matching", map[string][]string{"env": {"^dev.*$"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := MatchLabels(tc.selector, labels); got != tc.want {
				t.Fatalf("MatchLabels(%v) = %v, want %v", tc.selector, got, tc.want)
			}
		})
	}
}

func TestClusterVisibleDenyWins(t *testing.T) {
	allowAll := &state.Role{Allow: state.Conditions{KubernetesLabels: map[string][]string{"*": {"*"}}}}
	denyProd := &state.Role{Deny: state.Conditions{KubernetesLabels: map[string][]string{"env": {"prod"}}}}
	if !ClusterVisible([]*state.Role{allowAll}, map[string]string{"env": "prod"}) {
		t.Fatal("allow-all role does not see the cluster")
	}
	if ClusterVisible([]*state.Role{allowAll, denyProd}, map[string]string{"env": "prod"}) {
		t.Fatal("a denied cluster is visible")
	}
	if ClusterVisible(nil, map[string]string{"env": "prod"}) {
		t.Fatal("no roles see a cluster")
	}
}
