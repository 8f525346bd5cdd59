// Package kubeproxy is the proxy's Kubernetes access (TELEPORT.md §7): path routing to the
// clusters' real API servers, the identity and role checks, and impersonation headers.
package kubeproxy

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// Handler serves the Kubernetes route.
type Handler struct {
	state *state.State

	mu         sync.Mutex
	transports map[string]*upstreamTransport
}

type upstreamTransport struct {
	h2, h1   *http.Transport
	upstream *url.URL
}

// New makes the Kubernetes route handler.
func New(st *state.State) *Handler {
	return &Handler{state: st, transports: map[string]*upstreamTransport{}}
}

// Target is where a request goes after the checks.
type Target struct {
	Cluster   state.KubeCluster
	Path      string
	User      string
	Groups    []string
	Caller    *auth.Caller
	Teleport  string
	KubeName  string
	StatusErr error
}

const pathPrefix = "/v1/teleport/"

// ParsePath splits /v1/teleport/<b64 teleport cluster>/<b64 kube cluster>/<api path>; ok is
// false when the path does not use path routing.
func ParsePath(p string) (teleportCluster, kubeCluster, rest string, ok bool, err error) {
	if !strings.HasPrefix(p, pathPrefix) {
		return "", "", "", false, nil
	}
	parts := strings.SplitN(strings.TrimPrefix(p, pathPrefix), "/", 3)
	if parts[0] == "" {
		return "", "", "", true, trail.BadParameterf("no Teleport cluster name found in path")
	}
	if len(parts) < 2 || parts[1] == "" {
		return "", "", "", true, trail.BadParameterf("no Kubernetes cluster name found in path")
	}
	// A name that is not unpadded URL-safe base64 is an error of no kind (HTTP 500), as
	// Teleport passes the decoder's error on.
	tc, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return "", "", "", true, trail.Wrap(err, "decoding the Teleport cluster name")
	}
	kc, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", "", true, trail.Wrap(err, "decoding the Kubernetes cluster name")
	}
	if !utf8.Valid(tc) || !utf8.Valid(kc) {
		return "", "", "", true, trail.BadParameterf("invalid cluster name in path")
	}
	rest = "/"
	if len(parts) == 3 {
		rest += parts[2]
	}
	return string(tc), string(kc), rest, true, nil
}

// checkRouteNotOverwritten: a certificate routed to a cluster may only be used for that cluster.
func checkRouteNotOverwritten(c *auth.Caller, teleportCluster, kubeCluster string) error {
	id := c.Identity
	if (id.RouteToCluster != "" && id.RouteToCluster != teleportCluster) ||
		(id.KubernetesCluster != "" && id.KubernetesCluster != kubeCluster) {
		return trail.AccessDeniedf("existing route in identity may not be overwritten")
	}
	return nil
}

// checkClusterAllowed: the cluster exists and the caller's roles' kubernetes_labels match it;
// otherwise it is invisible.
func checkClusterAllowed(d *state.Data, c *auth.Caller, teleportCluster, kubeCluster string) (*state.KubeCluster, []*state.Role, error) {
	if teleportCluster != d.ClusterName {
		return nil, nil, trail.NotFoundf("cluster %q is not found", teleportCluster)
	}
	if c.Host {
		// Teleport's proxy serves Kubernetes to users only.
		return nil, nil, trail.AccessDeniedf("[00] access denied")
	}
	cluster, ok := d.Clusters[kubeCluster]
	roles := auth.RolesByName(d, c.Identity.Roles)
	if !ok || !auth.ClusterVisible(roles, cluster.AllLabels()) {
		return nil, nil, trail.AccessDeniedf("kubernetes cluster %q not found", kubeCluster)
	}
	return cluster, roles, nil
}

const impersonationDenied = "impersonation request has been denied"

// ImpersonationFor picks the Impersonate-User and Impersonate-Group values: the one allowed
// kubernetes_users entry (the Teleport username when none is set), the allowed
// kubernetes_groups. Client-sent Impersonate-User/Impersonate-Group values must stay within the
// allowed sets; any other Impersonate-* header is refused.
func ImpersonationFor(username string, allowedUsers, allowedGroups []string, headers http.Header) (string, []string, error) {
	if len(allowedUsers) == 0 && len(allowedGroups) == 0 {
		// NotFound (404), as Teleport's Kubernetes service answers it.
		return "", nil, trail.NotFoundf("Your user's Teleport role does not allow Kubernetes access. " +
			"Please ask cluster administrator to ensure your role has appropriate kubernetes_groups and kubernetes_users set.")
	}
	users := allowedUsers
	if len(users) == 0 {
		users = []string{username}
	}
	var user string
	var groups []string
	for name, values := range headers {
		if !strings.HasPrefix(name, "Impersonate-") {
			continue
		}
		switch name {
		case "Impersonate-User":
			if len(values) != 1 {
				return "", nil, trail.AccessDeniedf("%s, invalid user header %q", impersonationDenied, values)
			}
			if values[0] == "" {
				continue // client-go sends an empty user with groups: the default user applies
			}
			if !slices.Contains(users, values[0]) {
				return "", nil, trail.AccessDeniedf("%s, user header %q is not allowed in roles", impersonationDenied, values[0])
			}
			user = values[0]
		case "Impersonate-Group":
			for _, g := range values {
				if !slices.Contains(allowedGroups, g) {
					return "", nil, trail.AccessDeniedf("%s, group header %q value is not allowed in roles", impersonationDenied, g)
				}
				groups = append(groups, g)
			}
		default:
			return "", nil, trail.AccessDeniedf("%s, unsupported impersonation header %q", impersonationDenied, name)
		}
	}
	if user == "" {
		if len(users) > 1 {
			return "", nil, trail.AccessDeniedf("please select a user to impersonate, refusing to select a user due to several kubernetes_users set up for this user")
		}
		user = users[0]
	}
	if len(groups) == 0 {
		groups = allowedGroups
	}
	slices.Sort(groups)
	return user, slices.Compact(groups), nil
}

// Resolve runs every check of §7 on a request and says where it goes.
func (h *Handler) Resolve(r *http.Request) (*Target, error) {
	if r.TLS == nil {
		return nil, trail.AccessDeniedf("access denied: no client certificate")
	}
	var t Target
	var err error
	h.state.Read(func(d *state.Data) {
		t.Caller, err = auth.CallerFromTLS(*r.TLS, d)
		if err != nil {
			return
		}
		if err = auth.CheckNotLocked(d, t.Caller); err != nil {
			return
		}
		var routed bool
		t.Teleport, t.KubeName, t.Path, routed, err = ParsePath(r.URL.Path)
		if err != nil {
			return
		}
		if !routed {
			// Without path routing the certificate names the cluster.
			t.Teleport, t.KubeName, t.Path = t.Caller.Identity.RouteToCluster, t.Caller.Identity.KubernetesCluster, r.URL.Path
			if t.Teleport == "" {
				t.Teleport = d.ClusterName
			}
			if t.KubeName == "" {
				err = trail.BadParameterf("the request names no Kubernetes cluster: use /v1/teleport/<cluster>/<kube cluster>/ path routing")
				return
			}
		}
		if err = checkRouteNotOverwritten(t.Caller, t.Teleport, t.KubeName); err != nil {
			return
		}
		var cluster *state.KubeCluster
		var roles []*state.Role
		cluster, roles, err = checkClusterAllowed(d, t.Caller, t.Teleport, t.KubeName)
		if err != nil {
			return
		}
		t.Cluster = *cluster
		users, groups := auth.KubePrincipals(roles, cluster.AllLabels())
		t.User, t.Groups, err = ImpersonationFor(t.Caller.Identity.Username, users, groups, r.Header)
		if err == nil {
			err = d.TakeFault("kube")
		}
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w}
	entry := state.LogEntry{Route: "kube", Method: r.Method + " " + r.URL.Path}
	t, err := h.Resolve(r)
	if t != nil {
		entry.Identity, entry.Instance = t.Caller.String(), t.Caller.Identity.BotInstanceID
	}
	if err != nil {
		writeStatus(rec, err)
		entry.Result, entry.Message = http.StatusText(rec.status), err.Error()
		h.state.Record(entry)
		return
	}
	tr, err := h.transport(&t.Cluster)
	if err != nil {
		writeStatus(rec, err)
		entry.Result, entry.Message = http.StatusText(rec.status), err.Error()
		h.state.Record(entry)
		return
	}
	proxy := &httputil.ReverseProxy{
		FlushInterval: -1,
		Transport:     tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = tr.upstream.Scheme
			pr.Out.URL.Host = tr.upstream.Host
			pr.Out.URL.Path = strings.TrimSuffix(tr.upstream.Path, "/") + t.Path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = tr.upstream.Host
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set("Impersonate-User", t.User)
			for _, g := range t.Groups {
				pr.Out.Header.Add("Impersonate-Group", g)
			}
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeStatus(w, trail.Errorf(trail.ConnectionProblem, "upstream API server of %q: %v", t.Cluster.Name, err))
		},
	}
	proxy.ServeHTTP(rec, r)
	entry.Result = http.StatusText(rec.status)
	entry.Message = fmt.Sprintf("cluster=%s user=%s groups=%s", t.Cluster.Name, t.User, strings.Join(t.Groups, ","))
	h.state.Record(entry)
}

// RoundTrip sends upgrade requests (exec, port-forward) over HTTP/1.1, everything else over
// HTTP/2 when the upstream offers it.
func (u *upstreamTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Upgrade") != "" {
		return u.h1.RoundTrip(r)
	}
	return u.h2.RoundTrip(r)
}

// transport is shared by every cluster with the same upstream and credentials, so a thousand
// clusters in front of one API server share its connections.
func (h *Handler) transport(c *state.KubeCluster) (*upstreamTransport, error) {
	sum := sha256.Sum256([]byte(c.Upstream.Server + "\x00" + string(c.Upstream.CAPEM) + "\x00" +
		string(c.Upstream.CertPEM) + "\x00" + string(c.Upstream.KeyPEM)))
	key := string(sum[:])
	h.mu.Lock()
	defer h.mu.Unlock()
	if t, ok := h.transports[key]; ok {
		return t, nil
	}
	u, err := url.Parse(c.Upstream.Server)
	if err != nil || u.Host == "" {
		return nil, trail.Errorf(trail.ConnectionProblem, "cluster %q has no valid upstream server %q", c.Name, c.Upstream.Server)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(c.Upstream.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.Upstream.CAPEM) {
			return nil, trail.Errorf(trail.ConnectionProblem, "cluster %q: upstream CA is not PEM", c.Name)
		}
		cfg.RootCAs = pool
	}
	if len(c.Upstream.CertPEM) > 0 {
		pair, err := tls.X509KeyPair(c.Upstream.CertPEM, c.Upstream.KeyPEM)
		if err != nil {
			return nil, trail.Errorf(trail.ConnectionProblem, "cluster %q: upstream client certificate: %v", c.Name, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	h2 := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 32}
	h1 := &http.Transport{TLSClientConfig: cfg.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}
	t := &upstreamTransport{h2: h2, h1: h1, upstream: u}
	h.transports[key] = t
	return t, nil
}

// writeStatus writes an error as a Kubernetes Status object, as the Kubernetes proxy does.
func writeStatus(w http.ResponseWriter, err error) {
	code := trail.HTTPStatus(err)
	reason := map[int]string{
		http.StatusForbidden: "Forbidden", http.StatusNotFound: "NotFound", http.StatusBadRequest: "BadRequest",
		http.StatusGatewayTimeout: "Timeout", http.StatusTooManyRequests: "TooManyRequests",
	}[code]
	if reason == "" {
		reason = "InternalError"
	}
	body, _ := json.Marshal(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": err.Error(), "reason": reason, "code": code,
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
