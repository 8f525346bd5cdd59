package state

import (
	"strings"
	"testing"
)

func TestParseYAML(t *testing.T) {
	docs := `
kind: role
version: v7
metadata: {name: r}
spec:
  allow:
    kubernetes_labels: {env: prod, team: [a, b]}
    kubernetes_groups: [g]
---
kind: bot
version: v1
metadata: {name: b}
spec: {roles: [r]}
---
kind: token
version: v2
metadata: {name: k, expires: "2030-01-01T00:00:00Z"}
spec:
  roles: [Bot]
  bot_name: b
  join_method: kubernetes
  kubernetes:
    type: static_jwks
    static_jwks: {jwks: '{"keys": []}'}
    allow: [{service_account: "ns:sa"}]
`
	res, err := ParseYAML([]byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || res[0].Role.Allow.KubernetesLabels["team"][1] != "b" || res[0].Role.Allow.KubernetesLabels["env"][0] != "prod" {
		t.Fatalf("parsed %+v", res)
	}
	tok := res[2].Token
	if tok.JoinMethod != "kubernetes" || tok.Kubernetes.ServiceAccounts[0] != "ns:sa" || tok.Expires.Year() != 2030 {
		t.Fatalf("token %+v", tok)
	}
	d := &Data{Roles: map[string]*Role{}, Bots: map[string]*Bot{}, Tokens: map[string]*Token{}, Clusters: map[string]*KubeCluster{}}
	d.Apply(res)
	if got := d.Roles["bot-b"].Allow.ImpersonateRoles; len(got) != 1 || got[0] != "r" {
		t.Fatalf("bot role impersonates %v", got)
	}
}

func TestParseYAMLRefusals(t *testing.T) {
	cases := []struct{ name, doc, want string }{
		{"role of an old version", "kind: role\nversion: v5\nmetadata: {name: r}\n", "use v7"},
		{"unknown kind", "kind: user\nversion: v2\nmetadata: {name: u}\n", `kind "user" is not supported`},
		{"no name", "kind: bot\nversion: v1\nspec: {roles: []}\n", "metadata.name is required"},
		{"static_jwks without jwks", "kind: token\nversion: v2\nmetadata: {name: t}\nspec: {roles: [Bot], join_method: kubernetes, kubernetes: {type: static_jwks, allow: [{service_account: 'a:b'}]}}\n", "jwks is required"},
		{"service account without namespace", "kind: token\nversion: v2\nmetadata: {name: t}\nspec: {roles: [Bot], join_method: kubernetes, kubernetes: {type: static_jwks, static_jwks: {jwks: x}, allow: [{service_account: 'b'}]}}\n", "namespace:name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseYAML([]byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
