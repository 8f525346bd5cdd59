package server

// The Auth Service's gRPC calls (TELEPORT.md §3, §6): a join then every call, output identities, the listing, Host CA rotation, signature suites.

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/pb/authpb"
	"teleport-argocd-agent/tests/standin/pb/typespb"
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
	if want := "dev-1 dev-1 prod-1"; strings.Join(names, " ") != want {
		t.Fatalf("listed %q, want %q", strings.Join(names, " "), want)
	}
}

// Rule 5: TTL cap, impersonation limits, output certificates.
func TestOutputIdentityRules(t *testing.T) {
	s := start(t, Config{})
	bot, botID := mustJoin(t, s, "token-1")
	out, outID, err := outputIdentity(t, s, bot, []string{"argocd-access"}, 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if outID.Expires.After(botID.Expires) {
		t.Fatalf("output identity outlives the bot certificate: %v > %v", outID.Expires, botID.Expires)
	}
	if outID.RouteToCluster != "root" || outID.KubernetesCluster != "" || !outID.DisallowReissue || outID.Renewable || outID.Generation != 0 {
		t.Fatalf("output identity %+v", outID)
	}
	if len(outID.Roles) != 1 || outID.Roles[0] != "argocd-access" || len(outID.KubernetesGroups) != 1 {
		t.Fatalf("output identity roles/groups %+v", outID)
	}
	_, _, err = outputIdentity(t, s, bot, []string{"not-impersonable"}, time.Hour)
	wantStatus(t, err, "PermissionDenied", "role impersonation")
	_, _, err = outputIdentity(t, s, bot, []string{"no-such-role"}, time.Hour)
	wantStatus(t, err, "NotFound", "no-such-role")
	_, _, err = outputIdentity(t, s, out, []string{"argocd-access"}, time.Hour)
	wantStatus(t, err, "PermissionDenied", "not allowed to reissue")
	_, _, err = renew(t, s, out, time.Hour)
	wantStatus(t, err, "PermissionDenied", "not allowed to reissue")

	// Other users, other clusters, past expiries.
	client := authpb.NewAuthServiceClient(dialAuth(t, s, &bot))
	k := newKey(t)
	_, err = client.GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{Username: "bot-other", Expires: timestamppb.New(time.Now().Add(time.Hour)), TLSPublicKey: k.tlsPub})
	wantStatus(t, err, "PermissionDenied", "impersonation is not allowed")
	_, err = client.GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{Username: "bot-argocd", Expires: timestamppb.New(time.Now().Add(time.Hour)),
		RoleRequests: []string{"argocd-access"}, UseRoleRequests: true, RouteToCluster: "leaf", TLSPublicKey: k.tlsPub})
	wantStatus(t, err, "NotFound", `cluster "leaf"`)
	_, err = client.GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{Username: "bot-argocd", Expires: timestamppb.New(time.Now().Add(-time.Minute)), TLSPublicKey: k.tlsPub})
	wantStatus(t, err, "PermissionDenied", "expired")
	// GetRole: only roles the caller holds.
	_, err = client.GetRole(ctx(t), &authpb.GetRoleRequest{Name: "argocd-access"})
	wantStatus(t, err, "PermissionDenied", "access denied")
	role, err := authpb.NewAuthServiceClient(dialAuth(t, s, &out)).GetRole(ctx(t), &authpb.GetRoleRequest{Name: "argocd-access"})
	if err != nil || role.GetSpec().GetAllow().GetKubernetesLabels().GetValues()["env"].GetValues()[1] != "prod" {
		t.Fatalf("GetRole by the output identity: %v %v", role, err)
	}
}

// Rule 7: the listing is filtered by the caller's roles.
func TestListResourcesRules(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	out, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	list := func(cert tls.Certificate, req *authpb.ListResourcesRequest) ([]string, string, error) {
		if req.ResourceType == "" {
			req.ResourceType = "kube_server"
		}
		resp, err := authpb.NewAuthServiceClient(dialAuth(t, s, &cert)).ListResources(ctx(t), req)
		if err != nil {
			return nil, "", err
		}
		var names []string
		for _, r := range resp.Resources {
			if ks := r.GetKubernetesServer(); ks != nil {
				names = append(names, ks.GetSpec().GetCluster().GetMetadata().GetName())
			} else {
				names = append(names, r.GetKubeCluster().GetMetadata().GetName())
			}
		}
		return names, resp.NextKey, nil
	}
	names, _, err := list(bot, &authpb.ListResourcesRequest{Limit: 100})
	if err != nil || len(names) != 0 {
		t.Fatalf("the bot identity sees %v (%v), want nothing", names, err)
	}
	cases := []struct {
		name string
		req  *authpb.ListResourcesRequest
		want string
	}{
		{"only clusters the roles allow, one entry per kube server", &authpb.ListResourcesRequest{Limit: 100}, "dev-1 dev-1 prod-1"},
		{"labels must all be equal", &authpb.ListResourcesRequest{Limit: 100, Labels: map[string]string{"env": "prod"}}, "prod-1"},
		{"dynamic label results count as labels", &authpb.ListResourcesRequest{Limit: 100, Labels: map[string]string{"env": "prod", "team": "a"}}, "prod-1"},
		{"name predicate", &authpb.ListResourcesRequest{Limit: 100, PredicateExpression: `(name == "dev-1") || (labels["teleport.internal/discovered-name"] == "dev-1")`}, "dev-1 dev-1"},
		{"name predicate of a cluster the roles hide", &authpb.ListResourcesRequest{Limit: 100, PredicateExpression: `(name == "staging-1") || (labels["teleport.internal/discovered-name"] == "staging-1")`}, ""},
		{"kube_cluster lists clusters once", &authpb.ListResourcesRequest{Limit: 100, ResourceType: "kube_cluster"}, "dev-1 prod-1"},
		{"other resource types are empty", &authpb.ListResourcesRequest{Limit: 100, ResourceType: "node"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := list(out, tc.req)
			if err != nil || strings.Join(got, " ") != tc.want {
				t.Fatalf("got %q (%v), want %q", strings.Join(got, " "), err, tc.want)
			}
		})
	}
	t.Run("pages of one", func(t *testing.T) {
		var all []string
		key := ""
		for i := 0; i < 10; i++ {
			names, next, err := list(out, &authpb.ListResourcesRequest{Limit: 1, StartKey: key})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, names...)
			if next == "" {
				break
			}
			key = next
		}
		if strings.Join(all, " ") != "dev-1 dev-1 prod-1" {
			t.Fatalf("paged %v", all)
		}
	})
	refusals := []struct {
		name, code string
		req        *authpb.ListResourcesRequest
	}{
		{"unsupported predicate", "InvalidArgument", &authpb.ListResourcesRequest{Limit: 10, PredicateExpression: `labels["env"] == "dev"`}},
		{"nonpositive limit", "InvalidArgument", &authpb.ListResourcesRequest{Limit: 0}},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := list(out, tc.req)
			wantStatus(t, err, tc.code, "")
		})
	}
	// A relabelled cluster appears or disappears at once.
	adminPut(t, s, "/v1/clusters/staging-1/labels", `{"labels": {"env": "dev"}}`)
	if got, _, _ := list(out, &authpb.ListResourcesRequest{Limit: 100}); strings.Join(got, " ") != "dev-1 dev-1 prod-1 staging-1" {
		t.Fatalf("after relabel: %v", got)
	}
}

func TestHostCARotation(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	oldHostCA := s.HostCAPEM()
	adminPost(t, s, "/v1/host-ca/rotate", `{"phase": "start"}`)
	ca, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).GetClusterCACert(ctx(t), &emptypb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(ca.TLSCA), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("%d CA certificates during the rotation, want 2", n)
	}
	// A client that trusts only the old Host CA no longer verifies the new Auth certificate.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(oldHostCA)
	cfg := authTLS(s, &bot, nil)
	cfg.RootCAs = pool
	conn, _ := grpc.NewClient(s.WebAddr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	defer conn.Close()
	_, err = authpb.NewAuthServiceClient(conn).Ping(ctx(t), &authpb.PingRequest{})
	wantStatus(t, err, "Unavailable", "")
	adminPost(t, s, "/v1/host-ca/rotate", `{"phase": "complete"}`)
	ca, err = authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).GetClusterCACert(ctx(t), &emptypb.Empty{})
	if err != nil || strings.Count(string(ca.TLSCA), "BEGIN CERTIFICATE") != 1 || string(ca.TLSCA) == string(oldHostCA) {
		t.Fatalf("after the rotation: %v", err)
	}
}

func TestBalancedSuite(t *testing.T) {
	s := start(t, Config{Suite: "balanced-v1"})
	bot, _ := mustJoin(t, s, "token-1")
	ping, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).Ping(ctx(t), &authpb.PingRequest{})
	if err != nil || ping.SignatureAlgorithmSuite != typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_BALANCED_V1 {
		t.Fatalf("ping: %v %v", ping, err)
	}
	if _, ok := s.HostCA().Cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("balanced-v1 Host CA key is %T, want ECDSA", s.HostCA().Cert.PublicKey)
	}
}
