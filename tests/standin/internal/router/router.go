// Package router is the proxy's one TLS port (TELEPORT.md §1): it reads the ClientHello and
// picks the route — Auth by ALPN[0], Kubernetes by SNI, the web API otherwise — with that
// route's certificate and client-certificate rule. It is the only place that looks at ALPN and
// SNI; handlers receive connections whose handshake is done.
package router

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// Route names.
const (
	RouteAuth = "auth"
	RouteKube = "kube"
	RouteWeb  = "web"
)

// Prefixes and suffixes of the routing names.
const (
	AuthALPNPrefix  = "teleport-auth@"
	ClusterSuffix   = ".teleport.cluster.local"
	KubeSNIPrefix   = "kube-teleport-proxy-alpn."
	handshakeLimit  = 10 * time.Second
	listenerBacklog = 64
)

// Certs provides the current server certificates and the client CA pool; they change when
// the Host CA rotates.
type Certs interface {
	ClusterName() string
	WebCert() (*tls.Certificate, error)
	AuthCert() (*tls.Certificate, error)
	KubeCert() (*tls.Certificate, error)
	ClientCAs() *x509.CertPool
}

// ReverseTunnelALPN is the protocol of the proxy's reverse tunnels.
const ReverseTunnelALPN = "teleport-reversetunnel"

// Mode is what a listener serves.
type Mode int

// Listener modes.
const (
	// ModeRouted routes by ClientHello (TLS routing); ModeWebOnly serves only the web API (a
	// proxy without TLS routing); ModeAuth and ModeKube serve one route on their own port.
	// ModeL7 plays a TLS-terminating load balancer in front of the proxy port (TELEPORT.md
	// section 1a): TLS with the web certificate whatever the ClientHello asks, no ALPN
	// negotiated, only the web API behind it.
	ModeRouted Mode = iota
	ModeWebOnly
	ModeAuth
	ModeKube
	ModeL7
)

// Router accepts TLS connections on its listeners and hands them to the routes.
type Router struct {
	certs  Certs
	logger *slog.Logger
	// OnRefused, when set, hears of every refused handshake (route "" when none was chosen).
	OnRefused func(route, remote string, err error)
	routes    map[string]*ChanListener

	mu        sync.Mutex
	listeners []*managed
	conns     map[net.Conn]struct{}
}

type managed struct {
	addr string
	mode Mode
	ln   net.Listener
}

// New makes a router that delivers connections to one ChanListener per route.
func New(certs Certs, logger *slog.Logger) *Router {
	r := &Router{certs: certs, logger: logger, conns: map[net.Conn]struct{}{}, routes: map[string]*ChanListener{}}
	for _, name := range []string{RouteAuth, RouteKube, RouteWeb} {
		r.routes[name] = newChanListener(name)
	}
	return r
}

// Route is the listener a route's server accepts from.
func (r *Router) Route(name string) *ChanListener { return r.routes[name] }

// Listen binds addr (host:port, port 0 for a free one) and serves it in the given mode; it
// returns the bound address.
func (r *Router) Listen(addr string, mode Mode) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	m := &managed{addr: ln.Addr().String(), mode: mode, ln: ln}
	r.mu.Lock()
	r.listeners = append(r.listeners, m)
	r.mu.Unlock()
	go r.accept(m, ln)
	return m.addr, nil
}

// Stop closes every listener and every open connection: the proxy is down.
func (r *Router) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.listeners {
		if m.ln != nil {
			_ = m.ln.Close()
			m.ln = nil
		}
	}
	for c := range r.conns {
		_ = c.Close()
	}
	r.conns = map[net.Conn]struct{}{}
}

// Start binds the listeners again on the same addresses after Stop.
func (r *Router) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.listeners {
		if m.ln != nil {
			continue
		}
		ln, err := net.Listen("tcp", m.addr)
		if err != nil {
			return fmt.Errorf("listening again on %s: %w", m.addr, err)
		}
		m.ln = ln
		go r.accept(m, ln)
	}
	return nil
}

// Close stops everything and closes the route listeners.
func (r *Router) Close() {
	r.Stop()
	for _, l := range r.routes {
		_ = l.Close()
	}
}

func (r *Router) accept(m *managed, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[conn] = struct{}{}
		r.mu.Unlock()
		go r.handle(m.mode, conn)
	}
}

func (r *Router) forget(conn net.Conn) {
	r.mu.Lock()
	delete(r.conns, conn)
	r.mu.Unlock()
}

// Decide picks the route for a ClientHello. It returns an error for an auth route naming a
// cluster this proxy does not serve.
func Decide(mode Mode, cluster string, hello *tls.ClientHelloInfo) (string, error) {
	switch mode {
	case ModeAuth:
		return RouteAuth, nil
	case ModeKube:
		return RouteKube, nil
	case ModeWebOnly, ModeL7:
		return RouteWeb, nil
	}
	if len(hello.SupportedProtos) > 0 && strings.HasPrefix(hello.SupportedProtos[0], AuthALPNPrefix) {
		name := strings.TrimSuffix(strings.TrimPrefix(hello.SupportedProtos[0], AuthALPNPrefix), ClusterSuffix)
		decoded, err := hex.DecodeString(name)
		if err != nil || string(decoded) != cluster {
			shown := name
			if err == nil {
				shown = string(decoded)
			}
			return "", fmt.Errorf("auth server for %q cluster name not found", shown)
		}
		return RouteAuth, nil
	}
	if strings.HasPrefix(hello.ServerName, KubeSNIPrefix) {
		return RouteKube, nil
	}
	return RouteWeb, nil
}

func (r *Router) configFor(route string) (*tls.Config, error) {
	var cert *tls.Certificate
	var err error
	switch route {
	case RouteAuth:
		cert, err = r.certs.AuthCert()
	case RouteKube:
		cert, err = r.certs.KubeCert()
	default:
		cert, err = r.certs.WebCert()
	}
	if err != nil {
		return nil, err
	}
	switch route {
	case RouteAuth:
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"h2"},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    r.certs.ClientCAs(),
		}, nil
	case RouteKube:
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"h2", "http/1.1"},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    r.certs.ClientCAs(),
		}, nil
	default:
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{"h2", "http/1.1"},
		}, nil
	}
}

func (r *Router) handle(mode Mode, accepted net.Conn) {
	raw := &trackedConn{Conn: accepted, onClose: func() { r.forget(accepted) }}
	var route string
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			var err error
			route, err = Decide(mode, r.certs.ClusterName(), hello)
			if err != nil {
				return nil, err
			}
			c, err := r.configFor(route)
			switch {
			case err != nil:
			case mode == ModeL7:
				// A load balancer that terminates TLS selects no application protocol.
				c.NextProtos = nil
			case mode == ModeRouted && route == RouteWeb:
				// The proxy's port also serves reverse tunnels: clients' test handshake for a
				// TLS-terminating load balancer (TELEPORT.md section 1a) expects it selected.
				// The stand-in serves no reverse tunnels; such a connection gets the web API.
				c.NextProtos = append(c.NextProtos, ReverseTunnelALPN)
			}
			return c, err
		},
	}
	conn := tls.Server(raw, conf)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeLimit)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if r.OnRefused != nil {
			r.OnRefused(route, accepted.RemoteAddr().String(), err)
		} else {
			r.logger.Info("handshake refused", "remote", accepted.RemoteAddr().String(), "route", route, "error", err.Error())
		}
		_ = raw.Close()
		return
	}
	if !r.routes[route].deliver(conn) {
		_ = conn.Close()
	}
}

// trackedConn is an accepted connection that leaves the router's set when closed, so Stop
// closes exactly the open ones.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.onClose)
	return c.Conn.Close()
}

// ChanListener is a net.Listener fed by the router.
type ChanListener struct {
	name   string
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener(name string) *ChanListener {
	return &ChanListener{name: name, ch: make(chan net.Conn, listenerBacklog), done: make(chan struct{})}
}

func (l *ChanListener) deliver(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept waits for the next routed connection.
func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept.
func (l *ChanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

// Addr names the route.
func (l *ChanListener) Addr() net.Addr { return routeAddr(l.name) }

type routeAddr string

func (a routeAddr) Network() string { return "route" }
func (a routeAddr) String() string  { return string(a) }
