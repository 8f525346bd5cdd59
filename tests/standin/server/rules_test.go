package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
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

// Rule 6: mTLS on the auth and Kubernetes routes, ALPN routing.
func TestHandshakeRefusals(t *testing.T) {
	s := start(t, Config{AuthListen: "127.0.0.1:0"})
	bot, botID := mustJoin(t, s, "token-1")
	otherCA, err := pki.NewCA("root", "user-ca", pki.SuiteBalancedV1)
	if err != nil {
		t.Fatal(err)
	}
	k := newKey(t)
	mint := func(ca *pki.CA, expires time.Time) *tls.Certificate {
		id := *botID
		id.Expires = expires
		pem, err := ca.IssueUser(id, k.signer.Public(), time.Now().Add(-2*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		c := k.tlsCert(t, pem)
		return &c
	}
	hexName := "726f6f74"
	cases := []struct {
		name string
		cert *tls.Certificate
		alpn []string
		ok   bool
	}{
		{"bot certificate", &bot, nil, true},
		{"no client certificate", nil, nil, false},
		{"certificate from another CA", mint(otherCA, time.Now().Add(time.Hour)), nil, false},
		{"expired certificate", mint(s.UserCA(), time.Now().Add(-time.Minute)), nil, false},
		{"wrong ALPN first", &bot, []string{"h2", "teleport-auth@" + hexName + ".teleport.cluster.local"}, false},
		{"unknown cluster in ALPN", &bot, []string{"teleport-auth@6c656166.teleport.cluster.local", "h2"}, false},
	}
	for _, tc := range cases {
		for _, addr := range []string{s.WebAddr(), s.AuthAddr()} {
			if addr == s.AuthAddr() && tc.alpn != nil {
				continue // the direct port does not route by ALPN
			}
			t.Run(tc.name+" "+map[bool]string{true: "via proxy", false: "direct"}[addr == s.WebAddr()], func(t *testing.T) {
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(authTLS(s, tc.cert, tc.alpn))))
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				_, err = authpb.NewAuthServiceClient(conn).Ping(ctx(t), &authpb.PingRequest{})
				if tc.ok != (err == nil) {
					t.Fatalf("Ping: %v, want ok=%v", err, tc.ok)
				}
				if err != nil {
					wantStatus(t, err, "Unavailable", "")
				}
			})
			if tc.name == "unknown cluster in ALPN" {
				waitForLog(t, s, func(e state.LogEntry) bool {
					return e.Result == "Refused" && strings.Contains(e.Message, `auth server for "leaf" cluster name not found`)
				})
			}
		}
		t.Run(tc.name+" kube route", func(t *testing.T) {
			if tc.alpn != nil {
				t.Skip("ALPN does not route the Kubernetes route")
			}
			_, err := kubeGet(t, s, tc.cert, "kc", "/api")
			if tc.ok != (err == nil) {
				t.Fatalf("kube route: %v, want ok=%v", err, tc.ok)
			}
		})
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

// Rule 8 (the refusals; forwarding to real API servers is proven by the e2e tier).
func TestKubeRouteRefusals(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	out, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		cert     tls.Certificate
		teleport string
		kube     string
		status   int
		message  string
	}{
		{"route in the certificate differs from the path", out, "leaf", "dev-1", 403, "existing route in identity may not be overwritten"},
		{"cluster the roles do not allow", out, "root", "staging-1", 403, `kubernetes cluster "staging-1" not found`},
		{"cluster that does not exist", out, "root", "nope", 403, `kubernetes cluster "nope" not found`},
		{"bot identity sees no cluster", bot, "root", "dev-1", 403, "not found"},
		{"allowed cluster whose upstream is down", out, "root", "dev-1", 504, "upstream API server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := kubeGetPath(t, s, &tc.cert, "/v1/teleport/"+b64(tc.teleport)+"/"+b64(tc.kube)+"/api")
			if err != nil {
				t.Fatal(err)
			}
			var st struct {
				Kind    string `json:"kind"`
				Message string `json:"message"`
				Code    int    `json:"code"`
			}
			_ = json.Unmarshal(resp.body, &st)
			if resp.status != tc.status || st.Kind != "Status" || !strings.Contains(st.Message, tc.message) {
				t.Fatalf("got %d %s, want %d %q", resp.status, resp.body, tc.status, tc.message)
			}
		})
	}
}

// Rule 9 and the admin interface: injected faults carry the codes and statuses of §2/§8.
func TestInjectedFaultsUseTeleportCodes(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	adminPost(t, s, "/v1/faults", `{"target": "/proto.AuthService/Ping", "kind": "ConnectionProblem", "count": 2}`)
	adminPost(t, s, "/v1/faults", `{"target": "/webapi/find", "kind": "LimitExceeded", "message": "slow down"}`)
	client := authpb.NewAuthServiceClient(dialAuth(t, s, &bot))
	for i := 0; i < 2; i++ {
		_, err := client.Ping(ctx(t), &authpb.PingRequest{})
		wantStatus(t, err, "Unavailable", "injected failure")
	}
	if _, err := client.Ping(ctx(t), &authpb.PingRequest{}); err != nil {
		t.Fatalf("third Ping: %v", err)
	}
	resp, err := webClient(s).Get("https://" + s.WebAddr() + "/webapi/find")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || !strings.Contains(string(body), "slow down") {
		t.Fatalf("find: %d %s", resp.StatusCode, body)
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

func TestListenerStopAndStart(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	adminPost(t, s, "/v1/listener/stop", "")
	if _, err := (&http.Client{Timeout: 2 * time.Second, Transport: webClient(s).Transport}).Get("https://" + s.WebAddr() + "/webapi/find"); err == nil {
		t.Fatal("the web API answers while stopped")
	}
	adminPost(t, s, "/v1/listener/start", "")
	if _, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).Ping(ctx(t), &authpb.PingRequest{}); err != nil {
		t.Fatalf("after start: %v", err)
	}
}

func TestWebAPIDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		suite     any
		tlsRoute  bool
		kubeAddrs bool
	}{
		{"legacy with TLS routing", Config{}, "legacy", true, false},
		{"balanced-v1", Config{Suite: "balanced-v1"}, "balanced-v1", true, false},
		{"unspecified suite is absent", Config{Suite: "unspecified"}, nil, true, false},
		{"without TLS routing", Config{NoTLSRouting: true}, "legacy", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.cfg)
			for _, path := range []string{"/webapi/find", "/v1/webapi/find", "/webapi/ping"} {
				resp, err := webClient(s).Get("https://" + s.WebAddr() + path)
				if err != nil {
					t.Fatal(err)
				}
				var body map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				proxy := body["proxy"].(map[string]any)
				authSettings, _ := body["auth"].(map[string]any)
				if body["cluster_name"] != "root" || proxy["tls_routing_enabled"] != tc.tlsRoute ||
					proxy["ssh"].(map[string]any)["public_addr"] != s.WebAddr() || authSettings["signature_algorithm_suite"] != tc.suite {
					t.Fatalf("%s: %v", path, body)
				}
				kube := proxy["kube"].(map[string]any)
				if tc.kubeAddrs && (kube["public_addr"] != s.KubeAddr() || kube["listen_addr"] != s.KubeAddr()) {
					t.Fatalf("%s kube settings: %v", path, kube)
				}
				if _, ok := kube["public_addr"]; !tc.kubeAddrs && ok {
					t.Fatalf("%s advertises a Kubernetes address with TLS routing: %v", path, kube)
				}
			}
			resp, err := webClient(s).Get("https://" + s.WebAddr() + "/webapi/auth/export?type=tls-host")
			if err != nil {
				t.Fatal(err)
			}
			pemData, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(pemData) != string(s.HostCAPEM()) {
				t.Fatalf("export: %s", pemData)
			}
		})
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
