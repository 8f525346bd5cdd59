package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"golang.org/x/crypto/ssh"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

func publicPEM(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestCheckPublicKeys(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	shortRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	tlsKey, sshKey := publicPEM(t, &ecKey.PublicKey), ssh.MarshalAuthorizedKey(sshPub)
	cases := []struct {
		name         string
		tlsKey, sshK []byte
		kind         trail.Kind
		contains     string
	}{
		{"both keys", tlsKey, sshKey, allowed, ""},
		{"TLS key only", tlsKey, nil, allowed, ""},
		{"SSH key only", nil, sshKey, allowed, ""},
		{"no key at all", nil, nil, trail.BadParameter, "at least one of the TLS and SSH public keys is required"},
		{"TLS key that is not PEM", []byte("not a key"), nil, trail.BadParameter, "TLS public key is not PEM"},
		{"RSA TLS key under 2048 bits", publicPEM(t, &shortRSA.PublicKey), nil, trail.BadParameter, "RSA key of 1024 bits is too short"},
		{"SSH key not in authorized_keys form", tlsKey, []byte("ssh-nonsense AAAA"), trail.BadParameter, "not in authorized_keys format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkPublicKeys(tc.tlsKey, tc.sshK), tc.kind, tc.contains)
		})
	}
}

func TestCheckNotLocked(t *testing.T) {
	d := rulesData()
	d.Instances["free"] = &state.BotInstance{ID: "free", BotName: "argocd"}
	d.Instances["held"] = &state.BotInstance{ID: "held", BotName: "argocd", Locked: true, LockReason: "compromised"}
	withInstance := func(id string) *Caller {
		return &Caller{Identity: pki.Identity{Username: "bot-argocd", BotInstanceID: id}}
	}
	cases := []struct {
		name     string
		caller   *Caller
		kind     trail.Kind
		contains string
	}{
		{"instance not locked", withInstance("free"), allowed, ""},
		{"certificate of no bot instance", withInstance(""), allowed, ""},
		{"no certificate", nil, allowed, ""},
		{"instance locked", withInstance("held"), trail.AccessDenied, `lock targeting BotInstanceID:"held" is in force: compromised`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, CheckNotLocked(d, tc.caller), tc.kind, tc.contains)
		})
	}
}
