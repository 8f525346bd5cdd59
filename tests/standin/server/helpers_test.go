package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/pb/authpb"
)

const baseResources = `
kind: role
version: v7
metadata: {name: argocd-access}
spec:
  allow:
    kubernetes_labels: {env: [dev, prod]}
    kubernetes_groups: [argocd-managers]
---
kind: role
version: v7
metadata: {name: not-impersonable}
spec:
  allow:
    kubernetes_labels: {'*': '*'}
---
kind: bot
version: v1
metadata: {name: argocd}
spec: {roles: [argocd-access]}
---
kind: token
version: v2
metadata: {name: token-1}
spec: {roles: [Bot], bot_name: argocd, join_method: token}
---
kind: token
version: v2
metadata: {name: token-2}
spec: {roles: [Bot], bot_name: argocd, join_method: token}
---
kind: standin_kube_cluster
version: v1
metadata: {name: dev-1, labels: {env: dev}}
spec: {servers: 2, upstream: {server: "https://127.0.0.1:1"}}
---
kind: standin_kube_cluster
version: v1
metadata: {name: prod-1, labels: {team: a}}
spec:
  dynamic_labels: {env: {period: 1m, command: [echo, prod], result: prod}}
  upstream: {server: "https://127.0.0.1:1"}
---
kind: standin_kube_cluster
version: v1
metadata: {name: staging-1, labels: {env: staging}}
spec: {upstream: {server: "https://127.0.0.1:1"}}
`

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Resources == nil {
		cfg.Resources = []byte(baseResources)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

type keyPair struct {
	signer crypto.Signer
	tlsPub []byte
	sshPub []byte
}

func newKey(t *testing.T) keyPair {
	t.Helper()
	k, err := pki.NewKey(pki.SuiteBalancedV1)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return keyPair{signer: k, tlsPub: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), sshPub: ssh.MarshalAuthorizedKey(sshPub)}
}

func (k keyPair) tlsCert(t *testing.T, certPEM []byte) tls.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no certificate in %q", certPEM)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: k.signer, Leaf: leaf}
}

func webClient(s *Server) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.WebCAPEM())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

type webError struct {
	status  int
	message string
}

func (e *webError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.message) }

// webJoin joins through POST /webapi/host/credentials.
func webJoin(t *testing.T, s *Server, body map[string]any) (tls.Certificate, *pki.Identity, error) {
	t.Helper()
	k := newKey(t)
	if _, ok := body["public_tls_key"]; !ok {
		body["public_tls_key"] = k.tlsPub
		body["public_ssh_key"] = k.sshPub
	}
	if _, ok := body["role"]; !ok {
		body["role"] = "Bot"
	}
	data, _ := json.Marshal(body)
	resp, err := webClient(s).Post("https://"+s.WebAddr()+"/webapi/host/credentials", "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		return tls.Certificate{}, nil, &webError{status: resp.StatusCode, message: e.Error.Message}
	}
	var certs struct {
		TLS        []byte   `json:"tls"`
		TLSCACerts [][]byte `json:"tls_ca_certs"`
	}
	if err := json.Unmarshal(raw, &certs); err != nil {
		t.Fatal(err)
	}
	cert := k.tlsCert(t, certs.TLS)
	id, err := pki.IdentityFromCert(cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	return cert, &id, nil
}

func mustJoin(t *testing.T, s *Server, token string) (tls.Certificate, *pki.Identity) {
	t.Helper()
	cert, id, err := webJoin(t, s, map[string]any{"token": token})
	if err != nil {
		t.Fatalf("join with %s: %v", token, err)
	}
	return cert, id
}

func authTLS(s *Server, cert *tls.Certificate, alpn []string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.HostCAPEM())
	hexName := hex.EncodeToString([]byte(s.ClusterName()))
	if alpn == nil {
		alpn = []string{"teleport-auth@" + hexName + ".teleport.cluster.local", "h2"}
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: hexName + ".teleport.cluster.local", NextProtos: alpn}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func dialWith(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// dialAuth connects to Auth through the proxy's auth route, authenticated by cert.
func dialAuth(t *testing.T, s *Server, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.WebAddr(), grpc.WithTransportCredentials(credentials.NewTLS(authTLS(s, cert, nil))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// outputIdentity asks for the role-impersonated output identity of §6.
func outputIdentity(t *testing.T, s *Server, bot tls.Certificate, roles []string, ttl time.Duration) (tls.Certificate, *pki.Identity, error) {
	t.Helper()
	k := newKey(t)
	id, _ := pki.IdentityFromCert(bot.Leaf)
	resp, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{
		Username: id.Username, Expires: timestamppb.New(time.Now().Add(ttl)), RoleRequests: roles,
		UseRoleRequests: true, RouteToCluster: s.ClusterName(), TLSPublicKey: k.tlsPub, SSHPublicKey: k.sshPub,
	})
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := k.tlsCert(t, resp.TLS)
	out, err := pki.IdentityFromCert(cert.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	return cert, &out, nil
}

// renew renews a bot certificate with itself.
func renew(t *testing.T, s *Server, bot tls.Certificate, ttl time.Duration) (tls.Certificate, *pki.Identity, error) {
	t.Helper()
	k := newKey(t)
	id, _ := pki.IdentityFromCert(bot.Leaf)
	resp, err := authpb.NewAuthServiceClient(dialAuth(t, s, &bot)).GenerateUserCerts(ctx(t), &authpb.UserCertsRequest{
		Username: id.Username, Expires: timestamppb.New(time.Now().Add(ttl)), TLSPublicKey: k.tlsPub, SSHPublicKey: k.sshPub,
	})
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	cert := k.tlsCert(t, resp.TLS)
	out, _ := pki.IdentityFromCert(cert.Leaf)
	return cert, &out, nil
}

func wantStatus(t *testing.T, err error, code string, contains string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code().String() != code || !bytes.Contains([]byte(st.Message()), []byte(contains)) {
		t.Fatalf("got error %v, want %s containing %q", err, code, contains)
	}
}

func adminDo(t *testing.T, s *Server, method, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, s.AdminURL()+path, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin %s %s: %d %s", method, path, resp.StatusCode, data)
	}
	return data
}

func adminPost(t *testing.T, s *Server, path, body string) []byte {
	return adminDo(t, s, http.MethodPost, path, body)
}

func adminPut(t *testing.T, s *Server, path, body string) []byte {
	return adminDo(t, s, http.MethodPut, path, body)
}

func instances(t *testing.T, s *Server) []state.BotInstance {
	t.Helper()
	var out []state.BotInstance
	if err := json.Unmarshal(adminDo(t, s, http.MethodGet, "/v1/bot-instances", ""), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type jwtSigner struct {
	key  *rsa.PrivateKey
	jwks string
}

func newJWTSigner(t *testing.T) jwtSigner {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"}}})
	return jwtSigner{key: key, jwks: string(data)}
}

// sign makes a service account token for ns:agent; pod "" leaves the pod claim out.
func (j jwtSigner) sign(t *testing.T, aud, pod string, ttl time.Duration) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: j.key}, (&jose.SignerOptions{}).WithHeader("kid", "k"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	k8s := map[string]any{"namespace": "ns", "serviceaccount": map[string]string{"name": "agent"}}
	if pod != "" {
		k8s["pod"] = map[string]string{"name": pod}
	}
	raw, err := jwt.Signed(sig).Claims(map[string]any{
		"sub": "system:serviceaccount:ns:agent", "aud": []string{aud}, "iat": now.Unix(),
		"nbf": now.Unix(), "exp": now.Add(ttl).Unix(), "kubernetes.io": k8s,
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func addKubernetesToken(t *testing.T, s *Server, name, jwks, sa string) {
	t.Helper()
	quoted, _ := json.Marshal(jwks)
	adminPost(t, s, "/v1/resources", fmt.Sprintf(`kind: token
version: v2
metadata: {name: %s}
spec:
  roles: [Bot]
  bot_name: argocd
  join_method: kubernetes
  kubernetes:
    type: static_jwks
    static_jwks: {jwks: %s}
    allow: [{service_account: %q}]
`, name, quoted, sa))
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

type kubeResponse struct {
	status int
	body   []byte
}

// kubeGetPath sends GET path on the Kubernetes route (SNI kube-teleport-proxy-alpn...).
func kubeGetPath(t *testing.T, s *Server, cert *tls.Certificate, path string) (*kubeResponse, error) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.HostCAPEM())
	cfg := &tls.Config{RootCAs: pool, ServerName: "kube-teleport-proxy-alpn.teleport.cluster.local"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
	resp, err := client.Get("https://" + s.WebAddr() + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return &kubeResponse{status: resp.StatusCode, body: body}, err
}

func kubeGet(t *testing.T, s *Server, cert *tls.Certificate, kube, api string) (*kubeResponse, error) {
	return kubeGetPath(t, s, cert, "/v1/teleport/"+b64(s.ClusterName())+"/"+b64(kube)+api)
}

// waitForLog waits until the request log has an entry matching ok.
func waitForLog(t *testing.T, s *Server, ok func(state.LogEntry) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		found := false
		s.State.Read(func(d *state.Data) {
			for _, e := range d.Log {
				found = found || ok(e)
			}
		})
		if found {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no matching entry in the request log")
}
