package server

// The Kubernetes route's refusals (TELEPORT.md §7), through the proxy port and its own port.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/pb/authpb"
)

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
