package auth

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
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

func TestKubernetesJoinRules(t *testing.T) {
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
		{"valid pod-bound token", func() string { return good.sign(t, valid()) }, -1, ""},
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
		}, -1, ""},
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
		}, -1, ""},
		{"service account not in the allow rules", func() string {
			c := valid()
			c.subject = "system:serviceaccount:ns:intruder"
			return good.sign(t, c)
		}, trail.AccessDenied, "kubernetes token did not match any allow rules"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKubernetesToken(&state.Token{Kubernetes: rule}, tc.token(), "root", now)
			if tc.kind == -1 {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			if err == nil || trail.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("got %v (kind %v), want kind %v containing %q", err, trail.KindOf(err), tc.kind, tc.message)
			}
		})
	}
}
