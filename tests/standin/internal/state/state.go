// Package state is everything the stand-in knows, in one struct behind one mutex: resources,
// bot instances, certificate authorities, injected faults and the request log. The handlers
// and the admin interface both go through Read and Write.
package state

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// BotInstance is one joined bot: a join through the web API makes a new one; renewals and
// authenticated re-joins keep it.
type BotInstance struct {
	ID         string    `json:"id"`
	BotName    string    `json:"bot_name"`
	Generation uint64    `json:"generation"`
	JoinMethod string    `json:"join_method"`
	Token      string    `json:"token"`
	Locked     bool      `json:"locked"`
	LockReason string    `json:"lock_reason,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// Fault makes the next Remaining calls to Target fail with Kind and Message.
type Fault struct {
	Target    string     `json:"target"`
	Kind      trail.Kind `json:"-"`
	KindName  string     `json:"kind"`
	Message   string     `json:"message"`
	Remaining int        `json:"remaining"`
}

// LogEntry is one request as the request log records it. It never holds key material.
type LogEntry struct {
	Time     time.Time `json:"time"`
	Route    string    `json:"route"`
	Method   string    `json:"method"`
	Identity string    `json:"identity"`
	Instance string    `json:"bot_instance"`
	Result   string    `json:"result"`
	Message  string    `json:"message,omitempty"`
}

// Data is the state itself; only Read and Write hand it out.
type Data struct {
	ClusterName string
	Suite       string
	Version     string
	UserCA      *pki.CA
	// HostCAs are the trusted Host CAs; the first one signs. Two during a rotation.
	HostCAs   []*pki.CA
	Roles     map[string]*Role
	Bots      map[string]*Bot
	Tokens    map[string]*Token
	Clusters  map[string]*KubeCluster
	Instances map[string]*BotInstance
	Faults    []*Fault
	Log       []LogEntry
}

// State guards Data with one mutex.
type State struct {
	mu     sync.Mutex
	data   Data
	logger *slog.Logger
}

// New makes the state of a cluster with fresh User and Host CAs.
func New(clusterName, suite, version string, logger *slog.Logger) (*State, error) {
	userCA, err := pki.NewCA(clusterName, "user-ca", suite)
	if err != nil {
		return nil, err
	}
	hostCA, err := pki.NewCA(clusterName, "host-ca", suite)
	if err != nil {
		return nil, err
	}
	return &State{logger: logger, data: Data{
		ClusterName: clusterName, Suite: suite, Version: version,
		UserCA: userCA, HostCAs: []*pki.CA{hostCA},
		Roles: map[string]*Role{}, Bots: map[string]*Bot{}, Tokens: map[string]*Token{},
		Clusters: map[string]*KubeCluster{}, Instances: map[string]*BotInstance{},
	}}, nil
}

// Read runs fn with the state locked.
func (s *State) Read(fn func(d *Data)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.data)
}

// Write runs fn with the state locked and returns its error.
func (s *State) Write(fn func(d *Data) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fn(&s.data)
}

// Apply creates or replaces resources. A bot also gets its role bot-<name>, whose
// allow.impersonate.roles are the bot's spec.roles (TELEPORT.md §5).
func (d *Data) Apply(resources []Resource) {
	for _, r := range resources {
		switch {
		case r.Role != nil:
			d.Roles[r.Role.Name] = r.Role
		case r.Bot != nil:
			d.Bots[r.Bot.Name] = r.Bot
			name := BotResourceName(r.Bot.Name)
			d.Roles[name] = &Role{
				Name:   name,
				Labels: map[string]string{"teleport.internal/bot": r.Bot.Name},
				Allow:  Conditions{ImpersonateRoles: append([]string(nil), r.Bot.Roles...)},
			}
		case r.Token != nil:
			d.Tokens[r.Token.Name] = r.Token
		case r.Cluster != nil:
			d.Clusters[r.Cluster.Name] = r.Cluster
		}
	}
}

// Delete removes one resource; NotFound when there is none.
func (d *Data) Delete(kind, name string) error {
	var ok bool
	switch kind {
	case KindRole:
		_, ok = d.Roles[name]
		delete(d.Roles, name)
	case KindBot:
		_, ok = d.Bots[name]
		delete(d.Bots, name)
		delete(d.Roles, BotResourceName(name))
	case KindToken:
		_, ok = d.Tokens[name]
		delete(d.Tokens, name)
	case KindKubeCluster, "kube_cluster":
		_, ok = d.Clusters[name]
		delete(d.Clusters, name)
	default:
		return trail.BadParameterf("kind %q is not supported", kind)
	}
	if !ok {
		return trail.NotFoundf("%s %q is not found", kind, name)
	}
	return nil
}

// BotResourceName is the user and role name of a bot.
func BotResourceName(bot string) string { return "bot-" + bot }

// NewInstance records a fresh bot instance at generation 1.
func (d *Data) NewInstance(bot, joinMethod, token string, now time.Time) *BotInstance {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	id := fmt.Sprintf("%s-%s-%s-%s-%s", hex.EncodeToString(b[0:4]), hex.EncodeToString(b[4:6]),
		hex.EncodeToString(b[6:8]), hex.EncodeToString(b[8:10]), hex.EncodeToString(b[10:16]))
	inst := &BotInstance{ID: id, BotName: bot, Generation: 1, JoinMethod: joinMethod, Token: token, CreatedAt: now}
	d.Instances[id] = inst
	return inst
}

// InstanceList is every bot instance, oldest first.
func (d *Data) InstanceList() []BotInstance {
	out := make([]BotInstance, 0, len(d.Instances))
	for _, inst := range d.Instances {
		out = append(out, *inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// TakeFault consumes one injected failure for target, if any is armed.
func (d *Data) TakeFault(target string) error {
	for i, f := range d.Faults {
		if f.Target != target || f.Remaining <= 0 {
			continue
		}
		f.Remaining--
		if f.Remaining == 0 {
			d.Faults = append(d.Faults[:i], d.Faults[i+1:]...)
		}
		return trail.Errorf(f.Kind, "%s", f.Message)
	}
	return nil
}

// HostCAPEMs are the trusted Host CA certificates, the signing one first.
func (d *Data) HostCAPEMs() [][]byte {
	out := make([][]byte, 0, len(d.HostCAs))
	for _, ca := range d.HostCAs {
		out = append(out, ca.CertPEM)
	}
	return out
}

const maxLog = 10000

// Record appends to the request log and writes the entry to the process log.
func (s *State) Record(e LogEntry) {
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	s.mu.Lock()
	s.data.Log = append(s.data.Log, e)
	if len(s.data.Log) > maxLog {
		s.data.Log = s.data.Log[len(s.data.Log)-maxLog:]
	}
	s.mu.Unlock()
	if s.logger != nil {
		s.logger.Info("request", "route", e.Route, "method", e.Method, "identity", e.Identity,
			"bot_instance", e.Instance, "result", e.Result, "message", e.Message)
	}
}
