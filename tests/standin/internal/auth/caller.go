// Package auth is the stand-in's Auth Service: joins, certificate issue and renewal, role
// impersonation, role reads and the kube server inventory (TELEPORT.md §3–§6). Each rule is a
// function named after it; the gRPC and web API handlers only translate.
package auth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"time"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// Caller is who made a request, read from the verified client certificate.
type Caller struct {
	Identity pki.Identity
	// Host is true for certificates of the Host CA (Teleport services), false for the User CA.
	Host bool
}

// String names the caller for the request log.
func (c *Caller) String() string {
	if c == nil {
		return ""
	}
	if c.Host {
		return "host:" + c.Identity.Username
	}
	return c.Identity.Username
}

// CallerFromTLS reads the caller from a handshake whose client certificate was verified
// against the User CA or one of the Host CAs.
func CallerFromTLS(cs tls.ConnectionState, d *state.Data) (*Caller, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil, trail.AccessDeniedf("access denied: no verified client certificate")
	}
	chain := cs.VerifiedChains[0]
	leaf, root := chain[0], chain[len(chain)-1]
	id, err := pki.IdentityFromCert(leaf)
	if err != nil {
		return nil, trail.AccessDeniedf("access denied: %v", err)
	}
	switch {
	case sameCert(root, d.UserCA.Cert):
		return &Caller{Identity: id}, nil
	default:
		for _, ca := range d.HostCAs {
			if sameCert(root, ca.Cert) {
				return &Caller{Identity: id, Host: true}, nil
			}
		}
	}
	return nil, trail.AccessDeniedf("access denied: client certificate is not signed by a trusted certificate authority")
}

func sameCert(a, b *x509.Certificate) bool { return bytes.Equal(a.Raw, b.Raw) }

// ClientCAPool is the pool client certificates are verified against: User CA and Host CAs.
func ClientCAPool(d *state.Data) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(d.UserCA.Cert)
	for _, ca := range d.HostCAs {
		pool.AddCert(ca.Cert)
	}
	return pool
}

// CheckNotLocked refuses callers whose bot instance is locked: every call of a locked
// instance's certificates fails, on Auth and on the Kubernetes route.
func CheckNotLocked(d *state.Data, c *Caller) error {
	if c == nil || c.Identity.BotInstanceID == "" {
		return nil
	}
	inst, ok := d.Instances[c.Identity.BotInstanceID]
	if ok && inst.Locked {
		return trail.AccessDeniedf("lock targeting BotInstanceID:%q is in force: %s", inst.ID, inst.LockReason)
	}
	return nil
}

// Certs is what joins and GenerateUserCerts answer (proto.Certs).
type Certs struct {
	SSH        []byte
	TLS        []byte
	TLSCACerts [][]byte
	SSHCACerts [][]byte
}

// Server is the Auth Service over the shared state.
type Server struct {
	State *state.State
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// MaxBotTTL caps every bot certificate (TELEPORT.md §5); DefaultBotTTL is used when a join
// asks for no expiry.
const (
	MaxBotTTL     = 24 * time.Hour
	DefaultBotTTL = time.Hour
)

// capExpiry applies the 24 h cap: a longer ask is shortened silently.
func capExpiry(want, now time.Time) time.Time {
	if max := now.Add(MaxBotTTL); want.After(max) {
		return max
	}
	return want
}

// checkPublicKeys validates the keys a request brings before anything changes: a refused
// request must not leave a bot instance or a generation behind.
func checkPublicKeys(tlsKey, sshKey []byte) error {
	if len(tlsKey) == 0 && len(sshKey) == 0 {
		return trail.BadParameterf("at least one of the TLS and SSH public keys is required")
	}
	if len(tlsKey) > 0 {
		if _, err := pki.ParseTLSPublicKey(tlsKey); err != nil {
			return trail.BadParameterf("%v", err)
		}
	}
	if len(sshKey) > 0 {
		if err := pki.CheckSSHPublicKey(sshKey); err != nil {
			return trail.BadParameterf("%v", err)
		}
	}
	return nil
}

func issue(d *state.Data, id pki.Identity, tlsKey, sshKey []byte, now time.Time) (*Certs, error) {
	if len(tlsKey) == 0 && len(sshKey) == 0 {
		return nil, trail.BadParameterf("at least one of the TLS and SSH public keys is required")
	}
	out := &Certs{TLSCACerts: d.HostCAPEMs()}
	for _, ca := range d.HostCAs {
		out.SSHCACerts = append(out.SSHCACerts, ca.SSHAuthorizedKey())
	}
	if len(tlsKey) > 0 {
		pub, err := pki.ParseTLSPublicKey(tlsKey)
		if err != nil {
			return nil, trail.BadParameterf("%v", err)
		}
		if out.TLS, err = d.UserCA.IssueUser(id, pub, now); err != nil {
			return nil, err
		}
	}
	if len(sshKey) > 0 {
		var err error
		if out.SSH, err = d.UserCA.IssueSSHUser(id, sshKey, now); err != nil {
			return nil, trail.BadParameterf("%v", err)
		}
	}
	return out, nil
}
