package server

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	"teleport-argocd-agent/tests/standin/pb/authpb"
)

func TestTokenJoinThenAuthCalls(t *testing.T) {
	s := start(t, Config{AuthListen: "127.0.0.1:0"})
	bot, id := mustJoin(t, s, "token-1")
	if id.Username != "bot-argocd" || !id.Renewable || id.Generation != 1 || id.BotName != "argocd" || id.BotInstanceID == "" {
		t.Fatalf("bot identity: %+v", id)
	}
	client := authpb.NewAuthServiceClient(dialAuth(t, s, &bot))
	ping, err := client.Ping(ctx(t), &authpb.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ping.ClusterName != "root" || ping.ProxyPublicAddr != s.WebAddr() || ping.SignatureAlgorithmSuite != 1 {
		t.Fatalf("ping: %v", ping)
	}
	role, err := client.GetRole(ctx(t), &authpb.GetRoleRequest{Name: "bot-argocd"})
	if err != nil {
		t.Fatal(err)
	}
	if got := role.GetSpec().GetAllow().GetImpersonate().GetRoles(); len(got) != 1 || got[0] != "argocd-access" {
		t.Fatalf("impersonate roles: %v", got)
	}
	ca, err := client.GetClusterCACert(ctx(t), &emptypb.Empty{})
	if err != nil || string(ca.TLSCA) != string(s.HostCAPEM()) {
		t.Fatalf("GetClusterCACert: %v", err)
	}
	out, outID, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if outID.RouteToCluster != "root" || outID.KubernetesCluster != "" || !outID.DisallowReissue || outID.Renewable {
		t.Fatalf("output identity: %+v", outID)
	}
	page, err := authpb.NewAuthServiceClient(dialAuth(t, s, &out)).ListResources(ctx(t), &authpb.ListResourcesRequest{
		ResourceType: "kube_server", Namespace: "default", Limit: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range page.Resources {
		names = append(names, r.GetKubernetesServer().GetSpec().GetCluster().GetMetadata().GetName())
	}
	if want := "dev-1 dev-1 prod-1"; join(names) != want {
		t.Fatalf("listed %q, want %q", join(names), want)
	}
}

func join(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out
}
