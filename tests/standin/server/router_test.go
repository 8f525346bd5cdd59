package server

// The one TLS port: handshake refusals, ALPN routing, bad input, the listener switch.

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/pb/authpb"
)

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
