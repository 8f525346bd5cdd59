package server

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/pb/authpb"
	"teleport-argocd-agent/tests/standin/pb/typespb"
)

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

func TestKubernetesPortWithoutTLSRouting(t *testing.T) {
	s := start(t, Config{NoTLSRouting: true})
	bot, _ := mustJoin(t, s, "token-1")
	if _, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour); err == nil {
		t.Fatal("the web port routed the auth ALPN without TLS routing")
	}
	// Without TLS routing the agent needs the direct Auth port; the Kubernetes port takes no SNI.
	s2 := start(t, Config{NoTLSRouting: true, AuthListen: "127.0.0.1:0"})
	bot2, _ := mustJoin(t, s2, "token-1")
	cfg := authTLS(s2, &bot2, []string{"h2"})
	k := newKey(t)
	conn := dialWith(t, s2.AuthAddr(), cfg)
	resp, err := authpb.NewAuthServiceClient(conn).GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{
		Username: "bot-argocd", Expires: timestamppb.New(time.Now().Add(time.Hour)), RoleRequests: []string{"argocd-access"},
		UseRoleRequests: true, RouteToCluster: "root", TLSPublicKey: k.tlsPub,
	})
	if err != nil {
		t.Fatal(err)
	}
	outCert := k.tlsCert(t, resp.TLS)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s2.HostCAPEM())
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{outCert}}, ForceAttemptHTTP2: true,
	}}
	r, err := client.Get("https://" + s2.KubeAddr() + "/v1/teleport/" + b64("root") + "/" + b64("staging-1") + "/api")
	if err != nil {
		t.Fatalf("the Kubernetes port (verified by IP, no server name): %v", err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 403 || r.ProtoMajor != 2 || !strings.Contains(string(body), "staging-1") {
		t.Fatalf("got %s %d %s", r.Proto, r.StatusCode, body)
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

func TestBadInputLeavesTheServerServing(t *testing.T) {
	s := start(t, Config{})
	// Not TLS at all, then a truncated ClientHello.
	for _, payload := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x00\xff\x01\x00"} {
		conn, err := net.Dial("tcp", s.WebAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte(payload))
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _ = io.ReadAll(conn)
		conn.Close()
	}
	client := webClient(s)
	for _, body := range []string{"", "{", `{"token": 5}`, `{"token": "token-1", "public_tls_key": "` + strings.Repeat("A", 4096) + `"}`,
		`{"token": "token-1", "role": "Bot", "public_tls_key": "LS0tLS1CRUdJTiBQVUJMSUMgS0VZLS0tLS0K"}`} {
		resp, err := client.Post("https://"+s.WebAddr()+"/webapi/host/credentials", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("body %.40q: status %d, want a 4xx", body, resp.StatusCode)
		}
	}
	bot, _ := mustJoin(t, s, "token-1")
	out, _, err := outputIdentity(t, s, bot, []string{"argocd-access"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/teleport/!!/??/api", "/v1/teleport/", "/api/v1/pods", "/v1/teleport/" + b64("root")} {
		resp, err := kubeGetPath(t, s, &out, path)
		if err != nil || resp.status < 400 || resp.status == 502 {
			t.Fatalf("kube path %q: %v %v", path, resp, err)
		}
	}
	_, err = authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{
		Username: "bot-argocd", Expires: timestamppb.New(time.Now().Add(time.Hour)), TLSPublicKey: []byte("garbage"), SSHPublicKey: []byte("garbage"),
	})
	wantStatus(t, err, "InvalidArgument", "")
	if insts := instances(t, s); len(insts) != 1 || insts[0].Generation != 1 {
		t.Fatalf("a refused renewal moved the generation on: %+v", insts)
	}
	if _, _, err := renew(t, s, bot, time.Hour); err != nil {
		t.Fatalf("the server stopped answering: %v", err)
	}
}

func TestL7LoadBalancerNegotiatesNoALPNAndHidesAuth(t *testing.T) {
	s := start(t, Config{L7LoadBalancer: true})
	// The web API still answers through the load balancer.
	mustJoin(t, s, "token-1")
	// The test handshake Teleport clients make: only the reverse-tunnel ALPN, none selected.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.WebCAPEM())
	conn, err := tls.Dial("tcp", s.WebAddr(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"teleport-reversetunnel"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := conn.ConnectionState().NegotiatedProtocol; got != "" {
		t.Fatalf("the load balancer negotiated %q", got)
	}
	_ = conn.Close()
	// Auth is out of reach: its ALPN gets the web certificate, which the Host CA did not sign.
	hostPool := x509.NewCertPool()
	hostPool.AppendCertsFromPEM(s.HostCAPEM())
	authALPN := "teleport-auth@" + hex.EncodeToString([]byte("root")) + ".teleport.cluster.local"
	if c, err := tls.Dial("tcp", s.WebAddr(), &tls.Config{RootCAs: hostPool, ServerName: "teleport.cluster.local", NextProtos: []string{authALPN, "h2"}}); err == nil {
		_ = c.Close()
		t.Fatal("the Auth route was reachable through the load balancer")
	}
}

func TestProxyPortSelectsTheReverseTunnelALPNForTheTestHandshake(t *testing.T) {
	s := start(t, Config{})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.WebCAPEM())
	conn, err := tls.Dial("tcp", s.WebAddr(), &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"teleport-reversetunnel"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := conn.ConnectionState().NegotiatedProtocol; got != "teleport-reversetunnel" {
		t.Fatalf("the proxy port negotiated %q", got)
	}
}
