// Package server assembles the Teleport stand-in: state, Auth, the routed proxy port, the
// optional direct Auth and Kubernetes ports, and the admin interface. A Server is a value with
// Start and Close, like httptest.Server; tests and the command both use it.
package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"

	"teleport-argocd-agent/tests/standin/internal/admin"
	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/authgrpc"
	"teleport-argocd-agent/tests/standin/internal/kubeproxy"
	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/router"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/webapi"
)

// DefaultVersion is the Teleport version the stand-in reports.
const DefaultVersion = "18.1.0"

// Config says how to run a stand-in. Zero addresses mean 127.0.0.1:0.
type Config struct {
	// ClusterName is the Teleport cluster name (default "root").
	ClusterName string
	// Suite is the signature algorithm suite: legacy (default), balanced-v1, fips-v1, hsm-v1,
	// or unspecified (omitted from the web API, which clients read as legacy).
	Suite string
	// Version is the reported Teleport version (default DefaultVersion).
	Version string
	// Listen is the proxy's public web address.
	Listen string
	// AdminListen is the admin interface's address.
	AdminListen string
	// AuthListen, when set, opens a direct Auth port (plain TLS, ALPN h2).
	AuthListen string
	// NoTLSRouting turns off routing by ClientHello: the web port serves only the web API and
	// Kubernetes access gets its own port (KubeListen).
	NoTLSRouting bool
	// L7LoadBalancer puts a TLS-terminating load balancer in front of the proxy port
	// (TELEPORT.md section 1a): the web certificate for every ClientHello, no ALPN, only the
	// web API. The proxy behind it still has TLS routing; clients cannot reach it.
	// /webapi/connectionupgrade is not served.
	L7LoadBalancer bool
	// KubeListen is the Kubernetes port without TLS routing.
	KubeListen string
	// StateDir receives the CA files and ready.json ("" writes nothing).
	StateDir string
	// Resources is tctl-style YAML to start with.
	Resources []byte
	// Logger receives one line per request (default: discard).
	Logger *slog.Logger
}

// Server is a running stand-in.
type Server struct {
	cfg    Config
	State  *state.State
	Auth   *auth.Server
	logger *slog.Logger

	router  *router.Router
	grpc    *grpc.Server
	web     *http.Server
	kube    *http.Server
	admin   *http.Server
	adminLn net.Listener
	webCA   *pki.CA
	certs   *certs
	addrs   map[string]string
	addrsMu sync.Mutex
}

// New prepares a stand-in: CAs, state and resources; nothing listens before Start.
func New(cfg Config) (*Server, error) {
	if cfg.ClusterName == "" {
		cfg.ClusterName = "root"
	}
	if cfg.Suite == "" {
		cfg.Suite = pki.SuiteLegacy
	}
	switch cfg.Suite {
	case pki.SuiteLegacy, pki.SuiteBalancedV1, pki.SuiteFIPSV1, pki.SuiteHSMV1, "unspecified":
	default:
		return nil, fmt.Errorf("unknown signature algorithm suite %q", cfg.Suite)
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	for _, a := range []*string{&cfg.Listen, &cfg.AdminListen} {
		if *a == "" {
			*a = "127.0.0.1:0"
		}
	}
	if cfg.NoTLSRouting && cfg.KubeListen == "" {
		cfg.KubeListen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	keySuite := cfg.Suite
	if keySuite == "unspecified" {
		keySuite = pki.SuiteLegacy
	}
	st, err := state.New(cfg.ClusterName, cfg.Suite, cfg.Version, cfg.Logger)
	if err != nil {
		return nil, err
	}
	if len(cfg.Resources) > 0 {
		resources, err := state.ParseYAML(cfg.Resources)
		if err != nil {
			return nil, fmt.Errorf("resources: %w", err)
		}
		_ = st.Write(func(d *state.Data) error { d.Apply(resources); return nil })
	}
	webCA, err := pki.NewCA("teleport-standin web CA", "web-ca", pki.SuiteBalancedV1)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, State: st, Auth: &auth.Server{State: st}, logger: cfg.Logger, webCA: webCA,
		addrs: map[string]string{}}
	s.certs = &certs{state: st, webCA: webCA, suite: keySuite, cluster: cfg.ClusterName}
	return s, nil
}

// Start binds every port, starts serving and writes the CA files and ready.json.
func (s *Server) Start() error {
	s.router = router.New(s.certs, s.logger)
	s.router.OnRefused = func(route, remote string, err error) {
		if route == "" {
			route = "tls"
		}
		s.State.Record(state.LogEntry{Route: route, Method: "TLS handshake from " + remote, Result: "Refused", Message: err.Error()})
	}
	webMode := router.ModeRouted
	if s.cfg.NoTLSRouting {
		webMode = router.ModeWebOnly
	}
	if s.cfg.L7LoadBalancer {
		webMode = router.ModeL7
	}
	webAddr, err := s.router.Listen(s.cfg.Listen, webMode)
	if err != nil {
		return fmt.Errorf("proxy listener: %w", err)
	}
	s.setAddr("proxy", webAddr)
	host, _, _ := net.SplitHostPort(webAddr)
	s.certs.setPublicHost(host)
	if s.cfg.AuthListen != "" {
		a, err := s.router.Listen(s.cfg.AuthListen, router.ModeAuth)
		if err != nil {
			return fmt.Errorf("auth listener: %w", err)
		}
		s.setAddr("auth", a)
	}
	if s.cfg.NoTLSRouting {
		a, err := s.router.Listen(s.cfg.KubeListen, router.ModeKube)
		if err != nil {
			return fmt.Errorf("kube listener: %w", err)
		}
		s.setAddr("kube", a)
	}
	s.grpc = authgrpc.NewServer(s.Auth, s)
	h2 := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	s.web = &http.Server{Handler: webapi.New(s.Auth, s), TLSConfig: h2.Clone(), ReadHeaderTimeout: 30 * time.Second}
	s.kube = &http.Server{Handler: kubeproxy.New(s.State), TLSConfig: h2.Clone(), ReadHeaderTimeout: 30 * time.Second}
	go s.serve("auth", func() error { return s.grpc.Serve(s.router.Route(router.RouteAuth)) })
	go s.serve("web", func() error { return s.web.Serve(s.router.Route(router.RouteWeb)) })
	go s.serve("kube", func() error { return s.kube.Serve(s.router.Route(router.RouteKube)) })

	s.adminLn, err = net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	s.setAddr("admin", s.adminLn.Addr().String())
	s.admin = &http.Server{Handler: admin.New(s.State, s), ReadHeaderTimeout: 30 * time.Second}
	go s.serve("admin", func() error { return s.admin.Serve(s.adminLn) })
	return s.writeFiles()
}

func (s *Server) serve(name string, fn func() error) {
	err := fn()
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && !errors.Is(err, grpc.ErrServerStopped) {
		s.logger.Error("server stopped", "server", name, "error", err.Error())
	}
}

// Close stops everything.
func (s *Server) Close() {
	if s.router != nil {
		s.router.Close()
	}
	if s.grpc != nil {
		s.grpc.Stop()
	}
	for _, h := range []*http.Server{s.web, s.kube, s.admin} {
		if h != nil {
			_ = h.Close()
		}
	}
}

func (s *Server) setAddr(name, addr string) {
	s.addrsMu.Lock()
	defer s.addrsMu.Unlock()
	s.addrs[name] = addr
}

func (s *Server) addr(name string) string {
	s.addrsMu.Lock()
	defer s.addrsMu.Unlock()
	return s.addrs[name]
}

// WebAddr is the proxy's public web address (host:port).
func (s *Server) WebAddr() string { return s.addr("proxy") }

// ProxyPublicAddr is what Ping reports.
func (s *Server) ProxyPublicAddr() string { return s.WebAddr() }

// KubeAddr is the Kubernetes port without TLS routing ("" with it).
func (s *Server) KubeAddr() string { return s.addr("kube") }

// AuthAddr is the direct Auth port ("" when not opened).
func (s *Server) AuthAddr() string { return s.addr("auth") }

// AdminURL is the admin interface's base URL.
func (s *Server) AdminURL() string { return "http://" + s.addr("admin") }

// TLSRouting reports whether the proxy routes by ClientHello.
func (s *Server) TLSRouting() bool { return !s.cfg.NoTLSRouting }

// ClusterName is the Teleport cluster name.
func (s *Server) ClusterName() string { return s.cfg.ClusterName }

// Addresses are the bound addresses by name, for the admin interface.
func (s *Server) Addresses() map[string]string {
	s.addrsMu.Lock()
	defer s.addrsMu.Unlock()
	out := map[string]string{}
	for k, v := range s.addrs {
		out[k+"_addr"] = v
	}
	out["tls_routing"] = fmt.Sprint(!s.cfg.NoTLSRouting)
	if s.cfg.StateDir != "" {
		for _, f := range []string{"web-ca.pem", "host-ca.pem", "user-ca.pem"} {
			out[f] = filepath.Join(s.cfg.StateDir, f)
		}
	}
	return out
}

// WebCAPEM is the certificate of the CA that signs the web certificate.
func (s *Server) WebCAPEM() []byte { return s.webCA.CertPEM }

// HostCAPEM is every trusted Host CA certificate, the signing one first.
func (s *Server) HostCAPEM() []byte {
	var out []byte
	s.State.Read(func(d *state.Data) {
		for _, p := range d.HostCAPEMs() {
			out = append(out, p...)
		}
	})
	return out
}

// UserCAPEM is the User CA certificate.
func (s *Server) UserCAPEM() []byte {
	var out []byte
	s.State.Read(func(d *state.Data) { out = d.UserCA.CertPEM })
	return out
}

// UserCA and HostCA give tests the CAs themselves, to sign certificates of their own.
func (s *Server) UserCA() *pki.CA {
	var ca *pki.CA
	s.State.Read(func(d *state.Data) { ca = d.UserCA })
	return ca
}

// HostCA is the signing Host CA.
func (s *Server) HostCA() *pki.CA {
	var ca *pki.CA
	s.State.Read(func(d *state.Data) { ca = d.HostCAs[0] })
	return ca
}

// StopListening closes the ports and every open connection (Teleport is down).
func (s *Server) StopListening() { s.router.Stop() }

// StartListening binds the ports again, on the same addresses.
func (s *Server) StartListening() error { return s.router.Start() }

// RotateHostCA moves the Host CA rotation: "start" adds a new CA that signs from now on while
// the old one stays trusted; "complete" drops the old one.
func (s *Server) RotateHostCA(phase string) error {
	switch phase {
	case "start":
		ca, err := pki.NewCA(s.cfg.ClusterName, "host-ca", s.certs.suite)
		if err != nil {
			return err
		}
		err = s.State.Write(func(d *state.Data) error {
			if len(d.HostCAs) > 1 {
				return errors.New("a rotation is already in progress")
			}
			d.HostCAs = []*pki.CA{ca, d.HostCAs[0]}
			return nil
		})
		if err != nil {
			return err
		}
	case "complete":
		err := s.State.Write(func(d *state.Data) error {
			if len(d.HostCAs) < 2 {
				return errors.New("no rotation is in progress")
			}
			d.HostCAs = d.HostCAs[:1]
			return nil
		})
		if err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown rotation phase %q (start, complete)", phase)
	}
	return s.writeFiles()
}

// Ready is the content of ready.json.
type Ready struct {
	ProxyAddr   string `json:"proxy_addr"`
	AuthAddr    string `json:"auth_addr,omitempty"`
	KubeAddr    string `json:"kube_addr,omitempty"`
	AdminAddr   string `json:"admin_addr"`
	ClusterName string `json:"cluster_name"`
	Suite       string `json:"suite"`
	TLSRouting  bool   `json:"tls_routing"`
	WebCA       string `json:"web_ca"`
	HostCA      string `json:"host_ca"`
	UserCA      string `json:"user_ca"`
	PID         int    `json:"pid"`
}

func (s *Server) writeFiles() error {
	dir := s.cfg.StateDir
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	files := map[string][]byte{"web-ca.pem": s.WebCAPEM(), "host-ca.pem": s.HostCAPEM(), "user-ca.pem": s.UserCAPEM()}
	for name, data := range files {
		if err := writeAtomic(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	ready := Ready{
		ProxyAddr: s.WebAddr(), AuthAddr: s.AuthAddr(), KubeAddr: s.KubeAddr(), AdminAddr: s.addr("admin"),
		ClusterName: s.cfg.ClusterName, Suite: s.cfg.Suite, TLSRouting: !s.cfg.NoTLSRouting,
		WebCA: filepath.Join(dir, "web-ca.pem"), HostCA: filepath.Join(dir, "host-ca.pem"),
		UserCA: filepath.Join(dir, "user-ca.pem"), PID: os.Getpid(),
	}
	data, err := json.MarshalIndent(ready, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "ready.json"), append(data, '\n'))
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// certs issues and caches the server certificates of the routes.
type certs struct {
	state   *state.State
	webCA   *pki.CA
	suite   string
	cluster string

	mu         sync.Mutex
	publicHost string
	web        *tls.Certificate
	auth, kube map[string]*tls.Certificate
}

func (c *certs) setPublicHost(h string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.publicHost = h
	c.web = nil
}

func (c *certs) ClusterName() string { return c.cluster }

func (c *certs) ClientCAs() *x509.CertPool {
	var pool *x509.CertPool
	c.state.Read(func(d *state.Data) { pool = auth.ClientCAPool(d) })
	return pool
}

func hostNames(host string) []string {
	names := []string{host}
	if net.ParseIP(host) == nil {
		names = append(names, "*."+host)
	}
	if host != "localhost" {
		names = append(names, "localhost")
	}
	if host != "127.0.0.1" {
		names = append(names, "127.0.0.1")
	}
	return names
}

func (c *certs) WebCert() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.web == nil {
		cert, err := pair(c.webCA.IssueServer("teleport-standin proxy", "Proxy", c.cluster, hostNames(c.publicHost), pki.SuiteBalancedV1))
		if err != nil {
			return nil, err
		}
		c.web = cert
	}
	return c.web, nil
}

func (c *certs) signer() *pki.CA {
	var ca *pki.CA
	c.state.Read(func(d *state.Data) { ca = d.HostCAs[0] })
	return ca
}

// AuthCert is the Auth host certificate: Host CA, *.teleport.cluster.local.
func (c *certs) AuthCert() (*tls.Certificate, error) {
	ca := c.signer()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := ca.Cert.SerialNumber.String()
	if c.auth == nil {
		c.auth = map[string]*tls.Certificate{}
	}
	if cert, ok := c.auth[key]; ok {
		return cert, nil
	}
	names := []string{"*" + router.ClusterSuffix, router.ClusterSuffix[1:], hex.EncodeToString([]byte(c.cluster)) + router.ClusterSuffix}
	cert, err := pair(ca.IssueServer("auth-"+c.cluster, "Auth", c.cluster, names, c.suite))
	if err != nil {
		return nil, err
	}
	c.auth[key] = cert
	return cert, nil
}

// KubeCert is the proxy host certificate of the Kubernetes route: Host CA, *.<public host>
// and *.teleport.cluster.local (an IP SAN too when the public host is an IP).
func (c *certs) KubeCert() (*tls.Certificate, error) {
	ca := c.signer()
	c.mu.Lock()
	defer c.mu.Unlock()
	key := ca.Cert.SerialNumber.String()
	if c.kube == nil {
		c.kube = map[string]*tls.Certificate{}
	}
	if cert, ok := c.kube[key]; ok {
		return cert, nil
	}
	names := append([]string{"*" + router.ClusterSuffix, router.ClusterSuffix[1:]}, hostNames(c.publicHost)...)
	cert, err := pair(ca.IssueServer("proxy-"+c.cluster, "Proxy", c.cluster, names, c.suite))
	if err != nil {
		return nil, err
	}
	c.kube[key] = cert
	return cert, nil
}

func pair(sc *pki.ServerCert, err error) (*tls.Certificate, error) {
	if err != nil {
		return nil, fmt.Errorf("issuing a server certificate: %w", err)
	}
	p, err := tls.X509KeyPair(sc.CertPEM, sc.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading a server certificate: %w", err)
	}
	return &p, nil
}
