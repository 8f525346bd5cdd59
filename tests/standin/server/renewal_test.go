package server

// Renewal of bot certificates: generations, locks, TTL caps (TELEPORT.md §5).

import (
	"strings"
	"testing"
	"time"

	"teleport-argocd-agent/tests/standin/pb/authpb"
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
