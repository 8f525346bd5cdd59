package auth

import (
	"strings"
	"testing"

	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// allowed marks a table case whose rule must let the request through.
const allowed trail.Kind = -1

// wantRefusal checks a rule's verdict: nil for allowed, else an error of that kind whose
// message contains the given text (the message users see, as Teleport words it).
func wantRefusal(t *testing.T, err error, kind trail.Kind, contains string) {
	t.Helper()
	if kind == allowed {
		if err != nil {
			t.Fatalf("want the request allowed, got %v", err)
		}
		return
	}
	if err == nil || trail.KindOf(err) != kind || !strings.Contains(err.Error(), contains) {
		t.Fatalf("got %v (kind %v), want kind %v containing %q", err, trail.KindOf(err), kind, contains)
	}
}

// rulesData is the state the rule tables run against: a role seeing env=prod clusters that may
// impersonate it, a denied role, a bot, and two clusters.
func rulesData() *state.Data {
	return &state.Data{
		ClusterName: "root",
		Roles: map[string]*state.Role{
			"access": {Name: "access", Allow: state.Conditions{KubernetesLabels: map[string][]string{"env": {"prod"}}}},
			"bot-argocd": {Name: "bot-argocd", Allow: state.Conditions{ImpersonateRoles: []string{"access", "secret"}},
				Deny: state.Conditions{ImpersonateRoles: []string{"secret"}}},
			"secret": {Name: "secret"},
			"other":  {Name: "other"},
		},
		Bots: map[string]*state.Bot{"argocd": {Name: "argocd", Roles: []string{"access"}}},
		Clusters: map[string]*state.KubeCluster{
			"prod-1": {Name: "prod-1", Labels: map[string]string{"env": "prod"}},
			"dev-1": {Name: "dev-1", Labels: map[string]string{"env": "staging"},
				DynamicLabels: map[string]state.DynamicLabel{"env": {Result: "dev"}}},
		},
		Tokens:    map[string]*state.Token{},
		Instances: map[string]*state.BotInstance{},
	}
}
