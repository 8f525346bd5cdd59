package server

// Joins through the web API and the Join Service (TELEPORT.md §5): token refusals, instances and generations.

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/pb/authpb"
	"teleport-argocd-agent/tests/standin/pb/typespb"
)

// Rule 1: token joins.
func TestTokenJoinRefusals(t *testing.T) {
	s := start(t, Config{})
	if _, _, err := webJoin(t, s, map[string]any{"token": "token-1"}); err != nil {
		t.Fatal(err)
	}
	expired := `kind: token
version: v2
metadata: {name: old, expires: "2020-01-01T00:00:00Z"}
spec: {roles: [Bot], bot_name: argocd, join_method: token}
`
	adminPost(t, s, "/v1/resources", expired)
	cases := []struct {
		name    string
		body    map[string]any
		status  int
		message string
	}{
		{"unknown token", map[string]any{"token": "no-such-token"}, 403, "token expired or not found"},
		{"token used twice", map[string]any{"token": "token-1"}, 403, "token expired or not found"},
		{"expired token", map[string]any{"token": "old"}, 403, "token expired or not found"},
		{"role the token does not allow", map[string]any{"token": "token-2", "role": "Node"}, 403, `does not allow "Node" role`},
		{"no public key", map[string]any{"token": "token-2", "public_tls_key": nil, "public_ssh_key": nil}, 400, "public key"},
		{"malformed JSON key", map[string]any{"token": "token-2", "public_tls_key": "not base64!"}, 400, "invalid join request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := webJoin(t, s, tc.body)
			var we *webError
			if !errors.As(err, &we) || we.status != tc.status || !strings.Contains(we.message, tc.message) {
				t.Fatalf("got %v, want %d %q", err, tc.status, tc.message)
			}
		})
	}
	// A refused join with a valid token does not spend it.
	if _, _, err := webJoin(t, s, map[string]any{"token": "token-2"}); err != nil {
		t.Fatalf("token-2 was spent by a refused join: %v", err)
	}
}

// Rule 4: re-join over an authenticated connection keeps the instance; the web API makes new ones.
func TestRejoinKeepsInstanceWebJoinMakesNew(t *testing.T) {
	s := start(t, Config{})
	signer := newJWTSigner(t)
	addKubernetesToken(t, s, "kube-token", signer.jwks, "ns:agent")
	jwtToken := signer.sign(t, "root", "agent-0", 10*time.Minute)
	bot, id, err := webJoin(t, s, map[string]any{"token": "kube-token", "id_token": jwtToken})
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	certs, err := authpb.NewJoinServiceClient(dialAuth(t, s, &bot)).RegisterUsingToken(ctx(t), &typespb.RegisterUsingTokenRequest{
		Token: "kube-token", Role: "Bot", IDToken: jwtToken, PublicTLSKey: k.tlsPub, PublicSSHKey: k.sshPub,
		Expires: timestamppb.New(time.Now().Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}
	rejoined, _ := pki.IdentityFromCert(k.tlsCert(t, certs.TLS).Leaf)
	if rejoined.BotInstanceID != id.BotInstanceID || rejoined.Generation != id.Generation+1 || rejoined.Renewable {
		t.Fatalf("re-join: %+v after %+v", rejoined, id)
	}
	_, again, err := webJoin(t, s, map[string]any{"token": "kube-token", "id_token": jwtToken})
	if err != nil {
		t.Fatal(err)
	}
	if again.BotInstanceID == id.BotInstanceID || again.Generation != 1 {
		t.Fatalf("web join reused the instance: %+v", again)
	}
	if n := len(instances(t, s)); n != 2 {
		t.Fatalf("%d instances, want 2", n)
	}
	// The Join Service also refuses what the web API refuses, with gRPC codes.
	_, err = authpb.NewJoinServiceClient(dialAuth(t, s, &bot)).RegisterUsingToken(ctx(t), &typespb.RegisterUsingTokenRequest{
		Token: "kube-token", Role: "Bot", PublicTLSKey: k.tlsPub,
	})
	wantStatus(t, err, "InvalidArgument", "IDToken not provided")
	_, err = authpb.NewJoinServiceClient(dialAuth(t, s, &bot)).RegisterUsingToken(ctx(t), &typespb.RegisterUsingTokenRequest{
		Token: "kube-token", Role: "Bot", PublicTLSKey: k.tlsPub, IDToken: signer.sign(t, "root", "", 10*time.Minute),
	})
	wantStatus(t, err, "InvalidArgument", "projected pod bound service account token")
}

func TestJoinByAnotherIdentityStartsANewInstance(t *testing.T) {
	s := start(t, Config{})
	signer := newJWTSigner(t)
	addKubernetesToken(t, s, "kube-token", signer.jwks, "ns:agent")
	k := newKey(t)
	hostPEM, err := s.HostCA().IssueServer("proxy-host", "Proxy", "root", []string{"proxy"}, pki.SuiteBalancedV1)
	if err != nil {
		t.Fatal(err)
	}
	host, err := tls.X509KeyPair(hostPEM.CertPEM, hostPEM.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := authpb.NewJoinServiceClient(dialAuth(t, s, &host)).RegisterUsingToken(ctx(t), &typespb.RegisterUsingTokenRequest{
		Token: "kube-token", Role: "Bot", IDToken: signer.sign(t, "root", "agent-0", 10*time.Minute),
		PublicTLSKey: k.tlsPub, Expires: timestamppb.New(time.Now().Add(time.Hour)),
	})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := pki.IdentityFromCert(k.tlsCert(t, certs.TLS).Leaf)
	if id.Generation != 1 || id.BotInstanceID == "" || len(instances(t, s)) != 1 {
		t.Fatalf("join by a Host CA identity: %+v", id)
	}
	// A Host CA identity is not a user: it cannot ask for user certificates.
	_, err = authpb.NewAuthServiceClient(dialAuth(t, s, &host)).GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{
		Username: "proxy-host", Expires: timestamppb.New(time.Now().Add(time.Hour)), TLSPublicKey: k.tlsPub,
	})
	wantStatus(t, err, "PermissionDenied", "access denied")
}
