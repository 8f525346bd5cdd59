package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

type saSigner struct {
	key  *rsa.PrivateKey
	jwks string
}

func newSASigner(t *testing.T) saSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	data, _ := json.Marshal(set)
	return saSigner{key: key, jwks: string(data)}
}

type tokenClaims struct {
	aud      []string
	iat, exp *time.Time
	pod      string
	subject  string
	skipPod  bool
}

func (s saSigner) sign(t *testing.T, c tokenClaims) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"sub": c.subject, "aud": c.aud, "iss": "https://kubernetes.default.svc.cluster.local"}
	if c.iat != nil {
		claims["iat"] = c.iat.Unix()
	}
	if c.exp != nil {
		claims["exp"] = c.exp.Unix()
	}
	k8s := map[string]any{"namespace": "ns", "serviceaccount": map[string]string{"name": "agent", "uid": "u"}}
	if !c.skipPod {
		k8s["pod"] = map[string]string{"name": c.pod, "uid": "p"}
	}
	claims["kubernetes.io"] = k8s
	raw, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func tp(t time.Time) *time.Time { return &t }

func TestCheckKubernetesToken(t *testing.T) {
	now := time.Now()
	good := newSASigner(t)
	other := newSASigner(t)
	valid := func() tokenClaims {
		return tokenClaims{aud: []string{"root"}, iat: tp(now.Add(-time.Minute)), exp: tp(now.Add(9 * time.Minute)),
			pod: "agent-0", subject: "system:serviceaccount:ns:agent"}
	}
	rule := &state.KubernetesRule{Type: "static_jwks", JWKS: good.jwks, ServiceAccounts: []string{"ns:agent"}}
	cases := []struct {
		name    string
		token   func() string
		kind    trail.Kind
		message string
	}{
		{"valid pod-bound token", func() string { return good.sign(t, valid()) }, allowed, ""},
		{"empty id_token", func() string { return "" }, trail.BadParameter, "IDToken not provided"},
		{"not a JWT", func() string { return "not-a-jwt" }, trail.Unknown, "parsing jwt"},
		{"token signed by another key", func() string { return other.sign(t, valid()) }, trail.Unknown, "validating jwt signature"},
		{"audience without the cluster name", func() string {
			c := valid()
			c.aud = []string{"https://kubernetes.default.svc.cluster.local"}
			return good.sign(t, c)
		}, trail.Unknown, "validating jwt claims"},
		{"expired token", func() string {
			c := valid()
			c.iat, c.exp = tp(now.Add(-20*time.Minute)), tp(now.Add(-11*time.Second))
			return good.sign(t, c)
		}, trail.Unknown, "validating jwt claims"},
		{"expired within the 10 s leeway", func() string {
			c := valid()
			c.iat, c.exp = tp(now.Add(-20*time.Minute)), tp(now.Add(-5*time.Second))
			return good.sign(t, c)
		}, allowed, ""},
		{"not pod bound", func() string {
			c := valid()
			c.skipPod = true
			return good.sign(t, c)
		}, trail.BadParameter, "static_jwks joining requires the use of projected pod bound service account token"},
		{"no exp", func() string {
			c := valid()
			c.exp = nil
			return good.sign(t, c)
		}, trail.BadParameter, "with `exp`"},
		{"no iat", func() string {
			c := valid()
			c.iat = nil
			return good.sign(t, c)
		}, trail.BadParameter, "with `iat`"},
		{"lifetime over 30 minutes", func() string {
			c := valid()
			c.exp = tp(c.iat.Add(30*time.Minute + time.Second))
			return good.sign(t, c)
		}, trail.BadParameter, "TTL of less than 30m0s"},
		{"lifetime of exactly 30 minutes", func() string {
			c := valid()
			c.exp = tp(c.iat.Add(30 * time.Minute))
			return good.sign(t, c)
		}, allowed, ""},
		{"service account not in the allow rules", func() string {
			c := valid()
			c.subject = "system:serviceaccount:ns:intruder"
			return good.sign(t, c)
		}, trail.AccessDenied, "kubernetes token did not match any allow rules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKubernetesToken(&state.Token{Kubernetes: rule}, tc.token(), "root", now)
			wantRefusal(t, err, tc.kind, tc.message)
		})
	}
}

func TestCheckTokenValid(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	d := rulesData()
	d.Tokens["current"] = &state.Token{Name: "current", Expires: now.Add(time.Minute)}
	d.Tokens["forever"] = &state.Token{Name: "forever"}
	d.Tokens["old"] = &state.Token{Name: "old", Expires: now}
	cases := []struct {
		name, token string
		kind        trail.Kind
	}{
		{"token not yet expired", "current", allowed},
		{"token without an expiry", "forever", allowed},
		{"token expired", "old", trail.AccessDenied},
		{"unknown token", "never-made", trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkTokenValid(d, JoinRequest{Token: tc.token, Role: "Bot", NodeName: "n"}, now)
			// Expired and unknown tokens are refused alike: the answer does not say which.
			wantRefusal(t, err, tc.kind, `"n" can not join the cluster with role "Bot", token expired or not found`)
		})
	}
}

func TestCheckTokenAllowsRole(t *testing.T) {
	bot := &state.Token{Name: "t", Roles: []string{"Bot"}}
	nodeAndBot := &state.Token{Name: "t", Roles: []string{"Node", "Bot"}}
	cases := []struct {
		name     string
		token    *state.Token
		role     string
		kind     trail.Kind
		contains string
	}{
		{"bot token joining as a bot", bot, "Bot", allowed, ""},
		{"token listing the role among others", nodeAndBot, "Bot", allowed, ""},
		{"request without a role", bot, "", trail.BadParameter, "missing parameter role"},
		{"role the token does not allow", bot, "Node", trail.AccessDenied, `the token does not allow "Node" role`},
		{"role other than Bot", nodeAndBot, "Node", trail.BadParameter, "joins only bots"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkTokenAllowsRole(tc.token, JoinRequest{Role: tc.role, NodeName: "n"}), tc.kind, tc.contains)
		})
	}
}

func TestCheckBotExists(t *testing.T) {
	d := rulesData()
	cases := []struct {
		name     string
		token    *state.Token
		kind     trail.Kind
		contains string
	}{
		{"token for an existing bot", &state.Token{Name: "t", BotName: "argocd"}, allowed, ""},
		{"token without a bot name", &state.Token{Name: "t"}, trail.BadParameter, `token "t" has no bot_name`},
		{"token for a bot that does not exist", &state.Token{Name: "t", BotName: "ghost"}, trail.NotFound, `bot "ghost" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bot, err := checkBotExists(d, tc.token)
			wantRefusal(t, err, tc.kind, tc.contains)
			if tc.kind == allowed && bot.Name != tc.token.BotName {
				t.Fatalf("got bot %q, want %q", bot.Name, tc.token.BotName)
			}
		})
	}
}

func TestCheckGenerationNotReused(t *testing.T) {
	cases := []struct {
		name       string
		presented  uint64
		kind       trail.Kind
		contains   string
		wantLocked bool
	}{
		{"current generation", 3, allowed, "", false},
		{"older generation (a reused certificate)", 2, trail.AccessDenied, "cert generation mismatch for bot b/i: stored=3, presented=2", true},
		{"newer generation than stored", 4, trail.AccessDenied, "stored=3, presented=4", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst := &state.BotInstance{ID: "i", BotName: "b", Generation: 3}
			wantRefusal(t, checkGenerationNotReused(inst, tc.presented), tc.kind, tc.contains)
			if inst.Locked != tc.wantLocked {
				t.Fatalf("locked = %v, want %v", inst.Locked, tc.wantLocked)
			}
		})
	}
}

func TestCheckKubernetesAllowRules(t *testing.T) {
	rule := &state.KubernetesRule{Type: "static_jwks", ServiceAccounts: []string{"argocd:agent", "ci:deployer"}}
	cases := []struct {
		name, subject string
		kind          trail.Kind
	}{
		{"first allowed service account", "system:serviceaccount:argocd:agent", allowed},
		{"second allowed service account", "system:serviceaccount:ci:deployer", allowed},
		{"same name in another namespace", "system:serviceaccount:other:agent", trail.AccessDenied},
		{"subject that is not a service account", "argocd:agent", trail.AccessDenied},
		{"empty subject", "", trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkKubernetesAllowRules(rule, tc.subject), tc.kind, "kubernetes token did not match any allow rules")
		})
	}
}
