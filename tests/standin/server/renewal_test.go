package server

// Renewal of bot certificates: generations, locks, TTL caps (TELEPORT.md §5).

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/pb/authpb"
	"teleport-argocd-agent/tests/standin/pb/typespb"
)

// Rule 3: renewal of renewable bots; an older generation locks the instance.
func TestRenewalFromOlderGenerationLocksTheInstance(t *testing.T) {
	s := start(t, Config{})
	gen1, id1 := mustJoin(t, s, "token-1")
	gen2, id2, err := renew(t, s, gen1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if id2.Generation != 2 || !id2.Renewable || id2.BotInstanceID != id1.BotInstanceID {
		t.Fatalf("renewed identity %+v", id2)
	}
	_, _, err = renew(t, s, gen1, time.Hour)
	wantStatus(t, err, "PermissionDenied", "cert generation mismatch")
	wantStatus(t, err, "PermissionDenied", "stored=2, presented=1")
	// The newest certificate is locked out too, for every call.
	_, _, err = renew(t, s, gen2, time.Hour)
	wantStatus(t, err, "PermissionDenied", "lock targeting BotInstanceID")
	_, err = authpb.NewAuthServiceClient(dialAuth(t, s, &gen2)).Ping(ctx(t), &authpb.PingRequest{})
	wantStatus(t, err, "PermissionDenied", "is in force")
	insts := instances(t, s)
	if len(insts) != 1 || !insts[0].Locked {
		t.Fatalf("instances: %+v", insts)
	}
}

func TestRenewalCapsAndNonRenewableBots(t *testing.T) {
	s := start(t, Config{})
	_, joined, err := webJoin(t, s, map[string]any{"token": "token-2", "expires": time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(joined.Expires); d > 24*time.Hour+time.Minute || d < 23*time.Hour {
		t.Fatalf("join asked 48 h, got %v", d)
	}
	bot, _ := mustJoin(t, s, "token-1")
	_, id, err := renew(t, s, bot, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(id.Expires); d > 24*time.Hour+time.Minute || d < 23*time.Hour {
		t.Fatalf("renewal asked 48 h, got %v", d)
	}

	// A kubernetes-joined (non-renewable) bot cannot extend its certificate by renewal.
	signer := newJWTSigner(t)
	addKubernetesToken(t, s, "kube-token", signer.jwks, "ns:agent")
	kbot, kid, err := webJoin(t, s, map[string]any{"token": "kube-token", "id_token": signer.sign(t, "root", "agent-0", 10*time.Minute),
		"expires": time.Now().Add(30 * time.Minute).UTC().Format(time.RFC3339)})
	if err != nil {
		t.Fatal(err)
	}
	if kid.Renewable || kid.Generation != 1 {
		t.Fatalf("kubernetes-joined identity %+v", kid)
	}
	_, renewed, err := renew(t, s, kbot, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Expires.After(kid.Expires) || renewed.Renewable {
		t.Fatalf("non-renewable bot extended its certificate: %v > %v", renewed.Expires, kid.Expires)
	}
}

func TestLockedInstanceIsRefusedEverywhereUntilUnlocked(t *testing.T) {
	s := start(t, Config{})
	bot, id := mustJoin(t, s, "token-1")
	out, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	adminPost(t, s, "/v1/bot-instances/"+id.BotInstanceID+"/lock", `{"message": "compromised"}`)
	_, err = authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).Ping(ctx(t), &authpb.PingRequest{})
	wantStatus(t, err, "PermissionDenied", "compromised")
	_, err = authpb.NewAuthServiceClient(dialAuth(t, s, &out)).ListResources(ctx(t), &authpb.ListResourcesRequest{ResourceType: "kube_server", Limit: 5})
	wantStatus(t, err, "PermissionDenied", "is in force")
	resp, err := kubeGet(t, s, &out, "dev-1", "/api")
	if err != nil || resp.status != 403 || !strings.Contains(string(resp.body), "is in force") {
		t.Fatalf("kube route of a locked instance: %v %v", resp, err)
	}
	adminPost(t, s, "/v1/bot-instances/"+id.BotInstanceID+"/unlock", "")
	if _, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).Ping(ctx(t), &authpb.PingRequest{}); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
}

// Revocation (TELEPORT.md §5): deleting the bot takes its user and role; every later renewal and
// output issuance by any of its certificates is refused with a bare "access denied".
func TestDeletedBotGetsNoRenewalNorOutput(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	out, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	signer := newJWTSigner(t)
	addKubernetesToken(t, s, "kube-token", signer.jwks, "ns:agent")
	jwtToken := signer.sign(t, "root", "agent-0", 10*time.Minute)
	kubeBot, _, err := webJoin(t, s, map[string]any{"token": "kube-token", "id_token": jwtToken})
	if err != nil {
		t.Fatal(err)
	}
	rejoin := func(cert tls.Certificate) error {
		k := newKey(t)
		_, err := authpb.NewJoinServiceClient(dialAuth(t, s, &cert)).RegisterUsingToken(ctx(t), &typespb.RegisterUsingTokenRequest{
			Token: "kube-token", Role: "Bot", IDToken: jwtToken, PublicTLSKey: k.tlsPub, PublicSSHKey: k.sshPub,
			Expires: timestamppb.New(time.Now().Add(time.Hour)),
		})
		return err
	}
	getRole := func(cert tls.Certificate) error {
		_, err := authpb.NewAuthServiceClient(dialAuth(t, s, &cert)).GetRole(ctx(t), &authpb.GetRoleRequest{Name: "bot-argocd"})
		return err
	}
	cases := []struct {
		name string
		call func() error
	}{
		{"token-joined bot renews", func() error { _, _, err := renew(t, s, bot, time.Hour); return err }},
		{"bot issues an output identity", func() error {
			_, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
			return err
		}},
		{"bot reads its role to issue an output", func() error { return getRole(bot) }},
		{"output identity reads the role", func() error {
			_, err := authpb.NewAuthServiceClient(dialAuth(t, s, &out)).GetRole(ctx(t), &authpb.GetRoleRequest{Name: "argocd-access"})
			return err
		}},
		{"kubernetes-joined bot re-joins", func() error { return rejoin(kubeBot) }},
	}
	// Everything works while the bot exists (the re-join last: it moves the generation on).
	for _, c := range cases[:len(cases)-1] {
		if err := c.call(); err != nil {
			t.Fatalf("%s before the bot was deleted: %v", c.name, err)
		}
	}
	if err := rejoin(kubeBot); err != nil {
		t.Fatalf("re-join before the bot was deleted: %v", err)
	}
	bot, _ = mustJoin(t, s, "token-2")
	adminDo(t, s, http.MethodDelete, "/v1/resources/bot/argocd", "")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			wantStatus(t, err, "PermissionDenied", "access denied")
			if st, _ := status.FromError(err); st.Message() != "access denied" {
				t.Fatalf("message %q, want exactly %q", st.Message(), "access denied")
			}
		})
	}
	// A join through the web API names the missing bot, as before.
	_, _, err = webJoin(t, s, map[string]any{"token": "kube-token", "id_token": jwtToken})
	if err == nil || !strings.Contains(err.Error(), `bot "argocd" not found`) {
		t.Fatalf("web join for a deleted bot: %v", err)
	}
}
