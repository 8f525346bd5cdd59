package auth

import (
	"testing"

	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
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

func TestParsePredicate(t *testing.T) {
	cases := []struct {
		name, expr, want string
		wantErr          bool
	}{
		{"no predicate", "", "", false},
		{"tbot name predicate", `(name == "kc-1") || (labels["teleport.internal/discovered-name"] == "kc-1")`, "kc-1", false},
		{"tbot name predicate without spaces", `(name=="kc-1")||(labels["teleport.internal/discovered-name"]=="kc-1")`, "kc-1", false},
		{"names that differ are refused", `(name == "a") || (labels["teleport.internal/discovered-name"] == "b")`, "", true},
		{"other predicate is refused", `labels["env"] == "prod"`, "", true},
		{"bare name predicate is refused", `name == "kc-1"`, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePredicate(tc.expr)
			if tc.wantErr {
				if !trail.Is(err, trail.BadParameter) {
					t.Fatalf("want BadParameter, got %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestCheckGenerationNotReused(t *testing.T) {
	inst := &state.BotInstance{ID: "i", BotName: "b", Generation: 3}
	if err := checkGenerationNotReused(inst, 3); err != nil || inst.Locked {
		t.Fatalf("current generation refused: %v", err)
	}
	err := checkGenerationNotReused(inst, 2)
	if !trail.Is(err, trail.AccessDenied) || err.Error() != "cert generation mismatch for bot b/i: stored=3, presented=2" {
		t.Fatalf("older generation: %v", err)
	}
	if !inst.Locked {
		t.Fatal("a generation mismatch does not lock the instance")
	}
}
