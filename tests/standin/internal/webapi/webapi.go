// Package webapi is the proxy's unauthenticated web API (TELEPORT.md §2): discovery (find and
// ping), the legacy join endpoint and the Host CA export.
package webapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// Addresses are the public addresses the proxy advertises.
type Addresses interface {
	WebAddr() string
	// KubeAddr is the separate Kubernetes listener ("" with TLS routing).
	KubeAddr() string
	TLSRouting() bool
}

// MinClientVersion is what find and ping advertise as the oldest supported client.
const MinClientVersion = "17.0.0"

// Handler serves the web API.
type Handler struct {
	auth  *auth.Server
	addrs Addresses
	mux   *http.ServeMux
}

// New makes the web API handler.
func New(a *auth.Server, addrs Addresses) *Handler {
	h := &Handler{auth: a, addrs: addrs, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /webapi/find", h.wrap(h.find))
	h.mux.HandleFunc("GET /v1/webapi/find", h.wrap(h.find))
	h.mux.HandleFunc("GET /webapi/ping", h.wrap(h.ping))
	h.mux.HandleFunc("GET /v1/webapi/ping", h.wrap(h.ping))
	h.mux.HandleFunc("POST /webapi/host/credentials", h.wrap(h.hostCredentials))
	h.mux.HandleFunc("POST /v1/webapi/host/credentials", h.wrap(h.hostCredentials))
	h.mux.HandleFunc("GET /webapi/auth/export", h.wrap(h.export))
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

type response struct {
	status      int
	contentType string
	body        []byte
	instance    string
}

// wrap applies injected faults, writes errors as status + JSON and logs every request.
func (h *Handler) wrap(fn func(r *http.Request) (*response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var err error
		_ = h.auth.State.Write(func(d *state.Data) error { err = d.TakeFault(r.URL.Path); return nil })
		var resp *response
		if err == nil {
			resp, err = fn(r)
		}
		entry := state.LogEntry{Route: "web", Method: r.Method + " " + r.URL.Path}
		if err != nil {
			status := trail.HTTPStatus(err)
			body, _ := json.Marshal(map[string]any{"error": map[string]string{"message": err.Error()}})
			resp = &response{status: status, contentType: "application/json", body: body}
			entry.Message = err.Error()
		}
		if resp.status == 0 {
			resp.status = http.StatusOK
		}
		entry.Result = http.StatusText(resp.status)
		entry.Instance = resp.instance
		h.auth.State.Record(entry)
		w.Header().Set("Content-Type", resp.contentType)
		w.WriteHeader(resp.status)
		_, _ = w.Write(resp.body)
	}
}

func jsonResponse(v any) (*response, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return &response{contentType: "application/json", body: body}, nil
}

type pingResponse struct {
	Auth              authSettings  `json:"auth"`
	Proxy             proxySettings `json:"proxy"`
	ServerVersion     string        `json:"server_version"`
	MinClientVersion  string        `json:"min_client_version"`
	ClusterName       string        `json:"cluster_name"`
	Edition           string        `json:"edition"`
	FIPS              bool          `json:"fips"`
	AutomaticUpgrades bool          `json:"automatic_upgrades"`
}

type authSettings struct {
	Type                    string `json:"type,omitempty"`
	SecondFactor            string `json:"second_factor,omitempty"`
	AllowPasswordless       *bool  `json:"allow_passwordless,omitempty"`
	LocalConnectorName      string `json:"local_connector_name,omitempty"`
	SignatureAlgorithmSuite string `json:"signature_algorithm_suite,omitempty"`
}

type proxySettings struct {
	Kube              kubeSettings `json:"kube"`
	SSH               sshSettings  `json:"ssh"`
	DB                struct{}     `json:"db"`
	TLSRoutingEnabled bool         `json:"tls_routing_enabled"`
}

type kubeSettings struct {
	Enabled    bool   `json:"enabled,omitempty"`
	PublicAddr string `json:"public_addr,omitempty"`
	ListenAddr string `json:"listen_addr,omitempty"`
}

type sshSettings struct {
	ListenAddr       string `json:"listen_addr,omitempty"`
	TunnelListenAddr string `json:"tunnel_listen_addr,omitempty"`
	WebListenAddr    string `json:"web_listen_addr,omitempty"`
	PublicAddr       string `json:"public_addr,omitempty"`
	TunnelPublicAddr string `json:"ssh_tunnel_public_addr,omitempty"`
}

func (h *Handler) settings(full bool) pingResponse {
	var resp pingResponse
	h.auth.State.Read(func(d *state.Data) {
		resp.ClusterName = d.ClusterName
		resp.ServerVersion = d.Version
		if d.Suite != "unspecified" {
			resp.Auth.SignatureAlgorithmSuite = d.Suite
		}
	})
	resp.MinClientVersion = MinClientVersion
	resp.Edition = "community"
	web := h.addrs.WebAddr()
	resp.Proxy.TLSRoutingEnabled = h.addrs.TLSRouting()
	resp.Proxy.SSH = sshSettings{PublicAddr: web, WebListenAddr: web, TunnelPublicAddr: web}
	resp.Proxy.Kube.Enabled = true
	// With TLS routing Kubernetes shares the web address (clients use proxy.ssh.public_addr)
	// and no separate Kubernetes address is advertised.
	if !h.addrs.TLSRouting() {
		resp.Proxy.Kube.PublicAddr = h.addrs.KubeAddr()
		resp.Proxy.Kube.ListenAddr = h.addrs.KubeAddr()
	}
	if full {
		resp.Auth.Type = "local"
		resp.Auth.SecondFactor = "on"
		resp.Auth.LocalConnectorName = "local"
	}
	return resp
}

func (h *Handler) find(*http.Request) (*response, error) { return jsonResponse(h.settings(false)) }

func (h *Handler) ping(*http.Request) (*response, error) { return jsonResponse(h.settings(true)) }

// joinBody is the JSON of RegisterUsingTokenRequest. bot_instance_id and bot_generation are
// accepted and ignored: this endpoint always starts a new bot instance.
type joinBody struct {
	Token         string     `json:"token"`
	Role          string     `json:"role"`
	HostID        string     `json:"host_id"`
	NodeName      string     `json:"node_name"`
	PublicTLSKey  []byte     `json:"public_tls_key"`
	PublicSSHKey  []byte     `json:"public_ssh_key"`
	IDToken       string     `json:"id_token"`
	Expires       *time.Time `json:"expires"`
	BotInstanceID string     `json:"bot_instance_id"`
	BotGeneration int32      `json:"bot_generation"`
}

type certsBody struct {
	SSH        []byte   `json:"ssh"`
	TLS        []byte   `json:"tls"`
	TLSCACerts [][]byte `json:"tls_ca_certs"`
	SSHCACerts [][]byte `json:"ssh_ca_certs"`
}

func (h *Handler) hostCredentials(r *http.Request) (*response, error) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, trail.BadParameterf("reading request body: %v", err)
	}
	var body joinBody
	if err := json.Unmarshal(data, &body); err != nil {
		return nil, trail.BadParameterf("invalid join request: %v", err)
	}
	req := auth.JoinRequest{
		Token: body.Token, Role: body.Role, HostID: body.HostID, NodeName: body.NodeName,
		PublicTLSKey: body.PublicTLSKey, PublicSSHKey: body.PublicSSHKey, IDToken: body.IDToken,
	}
	if body.Expires != nil {
		req.Expires = *body.Expires
	}
	certs, inst, err := h.auth.Join(req, nil)
	if err != nil {
		return nil, err
	}
	resp, err := jsonResponse(certsBody{SSH: certs.SSH, TLS: certs.TLS, TLSCACerts: certs.TLSCACerts, SSHCACerts: certs.SSHCACerts})
	if resp != nil {
		resp.instance = inst.ID
	}
	return resp, err
}

func (h *Handler) export(r *http.Request) (*response, error) {
	var out []byte
	switch typ := r.URL.Query().Get("type"); typ {
	case "tls-host":
		h.auth.State.Read(func(d *state.Data) { out = bytes.Join(d.HostCAPEMs(), nil) })
	case "tls-user", "tls":
		h.auth.State.Read(func(d *state.Data) { out = d.UserCA.CertPEM })
	default:
		return nil, trail.BadParameterf("unsupported export type %q (the stand-in exports tls-host and tls-user)", typ)
	}
	return &response{contentType: "text/plain", body: out}, nil
}
