package state

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Role is a role resource (kind: role, version: v7) reduced to what the stand-in enforces.
type Role struct {
	Name   string
	Labels map[string]string
	Allow  Conditions
	Deny   Conditions
}

// Conditions are the allow or deny conditions of a role.
type Conditions struct {
	KubernetesLabels    map[string][]string
	KubernetesGroups    []string
	KubernetesUsers     []string
	KubernetesResources []map[string]any
	ImpersonateRoles    []string
	ImpersonateUsers    []string
}

// Bot is a bot resource (kind: bot, version: v1).
type Bot struct {
	Name  string
	Roles []string
}

// Token is a provision token (kind: token, version: v2).
type Token struct {
	Name       string
	Expires    time.Time
	Roles      []string
	BotName    string
	JoinMethod string
	Kubernetes *KubernetesRule
}

// KubernetesRule is a token's spec.kubernetes.
type KubernetesRule struct {
	Type            string
	JWKS            string
	ServiceAccounts []string
}

// KubeCluster is the stand-in's own kind (standin_kube_cluster): a Kubernetes cluster as Teleport's
// kube service would register it, the real API server behind it, and how many kube servers
// carry it.
type KubeCluster struct {
	Name          string
	Labels        map[string]string
	DynamicLabels map[string]DynamicLabel
	Servers       int
	Upstream      Upstream
}

// DynamicLabel is a command label with its last result.
type DynamicLabel struct {
	Period  time.Duration `json:"period" yaml:"period"`
	Command []string      `json:"command" yaml:"command"`
	Result  string        `json:"result" yaml:"result"`
}

// Upstream is how the stand-in reaches a cluster's real API server: URL, CA and an admin client
// certificate (PEM, read from files or given inline).
type Upstream struct {
	Server  string
	CAPEM   []byte
	CertPEM []byte
	KeyPEM  []byte
}

// AllLabels is the cluster's static labels plus each dynamic label's result (TELEPORT.md §3).
func (c *KubeCluster) AllLabels() map[string]string {
	out := make(map[string]string, len(c.Labels)+len(c.DynamicLabels))
	for k, v := range c.Labels {
		out[k] = v
	}
	for k, v := range c.DynamicLabels {
		out[k] = v.Result
	}
	return out
}

// Resource is one parsed document: exactly one of the fields is set.
type Resource struct {
	Role    *Role
	Bot     *Bot
	Token   *Token
	Cluster *KubeCluster
}

// Kind is the resource's kind as written in YAML.
func (r Resource) Kind() string {
	switch {
	case r.Role != nil:
		return KindRole
	case r.Bot != nil:
		return KindBot
	case r.Token != nil:
		return KindToken
	default:
		return KindKubeCluster
	}
}

// Resource kinds.
const (
	KindRole        = "role"
	KindBot         = "bot"
	KindToken       = "token"
	KindKubeCluster = "standin_kube_cluster"
)

type header struct {
	Kind     string `yaml:"kind"`
	Version  string `yaml:"version"`
	Metadata struct {
		Name    string            `yaml:"name"`
		Labels  map[string]string `yaml:"labels"`
		Expires *time.Time        `yaml:"expires"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"`
}

type conditionsYAML struct {
	KubernetesLabels    map[string]stringOrList `yaml:"kubernetes_labels"`
	KubernetesGroups    []string                `yaml:"kubernetes_groups"`
	KubernetesUsers     []string                `yaml:"kubernetes_users"`
	KubernetesResources []map[string]any        `yaml:"kubernetes_resources"`
	Impersonate         *struct {
		Roles []string `yaml:"roles"`
		Users []string `yaml:"users"`
	} `yaml:"impersonate"`
}

type stringOrList []string

func (s *stringOrList) UnmarshalYAML(node *yaml.Node) error {
	if node.Kind == yaml.ScalarNode {
		*s = []string{node.Value}
		return nil
	}
	var list []string
	if err := node.Decode(&list); err != nil {
		return err
	}
	*s = list
	return nil
}

func (c conditionsYAML) toConditions() Conditions {
	out := Conditions{
		KubernetesGroups:    c.KubernetesGroups,
		KubernetesUsers:     c.KubernetesUsers,
		KubernetesResources: c.KubernetesResources,
	}
	if len(c.KubernetesLabels) > 0 {
		out.KubernetesLabels = map[string][]string{}
		for k, v := range c.KubernetesLabels {
			out.KubernetesLabels[k] = v
		}
	}
	if c.Impersonate != nil {
		out.ImpersonateRoles = c.Impersonate.Roles
		out.ImpersonateUsers = c.Impersonate.Users
	}
	return out
}

// ParseYAML reads `tctl create`-style documents separated by `---`.
func ParseYAML(data []byte) ([]Resource, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []Resource
	for i := 0; ; i++ {
		var h header
		err := dec.Decode(&h)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if h.Kind == "" && h.Metadata.Name == "" {
			continue // an empty document
		}
		r, err := parseDocument(h)
		if err != nil {
			return nil, fmt.Errorf("document %d (kind %q, name %q): %w", i, h.Kind, h.Metadata.Name, err)
		}
		out = append(out, r)
	}
}

func parseDocument(h header) (Resource, error) {
	if h.Metadata.Name == "" {
		return Resource{}, errors.New("metadata.name is required")
	}
	switch h.Kind {
	case KindRole:
		if h.Version != "v7" {
			return Resource{}, fmt.Errorf("role version %q is not supported (use v7)", h.Version)
		}
		var spec struct {
			Allow conditionsYAML `yaml:"allow"`
			Deny  conditionsYAML `yaml:"deny"`
		}
		if err := h.Spec.Decode(&spec); err != nil && !h.Spec.IsZero() {
			return Resource{}, err
		}
		return Resource{Role: &Role{
			Name: h.Metadata.Name, Labels: h.Metadata.Labels,
			Allow: spec.Allow.toConditions(), Deny: spec.Deny.toConditions(),
		}}, nil
	case KindBot:
		if h.Version != "v1" {
			return Resource{}, fmt.Errorf("bot version %q is not supported (use v1)", h.Version)
		}
		var spec struct {
			Roles []string `yaml:"roles"`
		}
		if err := h.Spec.Decode(&spec); err != nil && !h.Spec.IsZero() {
			return Resource{}, err
		}
		return Resource{Bot: &Bot{Name: h.Metadata.Name, Roles: spec.Roles}}, nil
	case KindToken:
		return parseToken(h)
	case KindKubeCluster:
		return parseCluster(h)
	default:
		return Resource{}, fmt.Errorf("kind %q is not supported", h.Kind)
	}
}

func parseToken(h header) (Resource, error) {
	if h.Version != "v2" {
		return Resource{}, fmt.Errorf("token version %q is not supported (use v2)", h.Version)
	}
	var spec struct {
		Roles      []string `yaml:"roles"`
		BotName    string   `yaml:"bot_name"`
		JoinMethod string   `yaml:"join_method"`
		Kubernetes *struct {
			Type       string `yaml:"type"`
			StaticJWKS *struct {
				JWKS string `yaml:"jwks"`
			} `yaml:"static_jwks"`
			Allow []struct {
				ServiceAccount string `yaml:"service_account"`
			} `yaml:"allow"`
		} `yaml:"kubernetes"`
	}
	if err := h.Spec.Decode(&spec); err != nil {
		return Resource{}, err
	}
	t := &Token{Name: h.Metadata.Name, Roles: spec.Roles, BotName: spec.BotName, JoinMethod: spec.JoinMethod}
	if t.JoinMethod == "" {
		t.JoinMethod = "token"
	}
	if h.Metadata.Expires != nil {
		t.Expires = *h.Metadata.Expires
	}
	if len(t.Roles) == 0 {
		return Resource{}, errors.New("spec.roles is required")
	}
	switch t.JoinMethod {
	case "token":
	case "kubernetes":
		if spec.Kubernetes == nil {
			return Resource{}, errors.New("spec.kubernetes is required for join_method kubernetes")
		}
		k := &KubernetesRule{Type: spec.Kubernetes.Type}
		if k.Type == "" {
			k.Type = "in_cluster"
		}
		if k.Type == "static_jwks" {
			if spec.Kubernetes.StaticJWKS == nil || spec.Kubernetes.StaticJWKS.JWKS == "" {
				return Resource{}, errors.New("spec.kubernetes.static_jwks.jwks is required for type static_jwks")
			}
			k.JWKS = spec.Kubernetes.StaticJWKS.JWKS
		}
		if len(spec.Kubernetes.Allow) == 0 {
			return Resource{}, errors.New("spec.kubernetes.allow must have at least one rule")
		}
		for i, a := range spec.Kubernetes.Allow {
			if strings.Count(a.ServiceAccount, ":") != 1 {
				return Resource{}, fmt.Errorf("spec.kubernetes.allow[%d].service_account must be namespace:name", i)
			}
			k.ServiceAccounts = append(k.ServiceAccounts, a.ServiceAccount)
		}
		t.Kubernetes = k
	default:
		return Resource{}, fmt.Errorf("join_method %q is not supported by the stand-in (token, kubernetes)", t.JoinMethod)
	}
	return Resource{Token: t}, nil
}

func parseCluster(h header) (Resource, error) {
	var spec struct {
		DynamicLabels map[string]DynamicLabel `yaml:"dynamic_labels"`
		Servers       int                     `yaml:"servers"`
		Upstream      struct {
			Server   string `yaml:"server"`
			CAFile   string `yaml:"ca_file"`
			CAData   string `yaml:"ca_data"`
			CertFile string `yaml:"client_cert_file"`
			CertData string `yaml:"client_cert_data"`
			KeyFile  string `yaml:"client_key_file"`
			KeyData  string `yaml:"client_key_data"`
		} `yaml:"upstream"`
	}
	if err := h.Spec.Decode(&spec); err != nil && !h.Spec.IsZero() {
		return Resource{}, err
	}
	c := &KubeCluster{
		Name: h.Metadata.Name, Labels: h.Metadata.Labels, DynamicLabels: spec.DynamicLabels,
		Servers: spec.Servers, Upstream: Upstream{Server: spec.Upstream.Server},
	}
	if c.Servers <= 0 {
		c.Servers = 1
	}
	var err error
	if c.Upstream.CAPEM, err = fileOrData(spec.Upstream.CAFile, spec.Upstream.CAData); err != nil {
		return Resource{}, err
	}
	if c.Upstream.CertPEM, err = fileOrData(spec.Upstream.CertFile, spec.Upstream.CertData); err != nil {
		return Resource{}, err
	}
	if c.Upstream.KeyPEM, err = fileOrData(spec.Upstream.KeyFile, spec.Upstream.KeyData); err != nil {
		return Resource{}, err
	}
	return Resource{Cluster: c}, nil
}

func fileOrData(path, data string) ([]byte, error) {
	if path != "" {
		return os.ReadFile(path)
	}
	return []byte(data), nil
}
