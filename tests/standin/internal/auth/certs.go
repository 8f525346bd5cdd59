package auth

import (
	"bytes"
	"slices"
	"strings"
	"time"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// UserCertsRequest is proto.UserCertsRequest.
type UserCertsRequest struct {
	Username          string
	Expires           time.Time
	RouteToCluster    string
	KubernetesCluster string
	Usage             int32
	RoleRequests      []string
	UseRoleRequests   bool
	SSHPublicKey      []byte
	TLSPublicKey      []byte
}

// GenerateUserCerts renews the caller's own certificate or issues a role-impersonated one
// (TELEPORT.md §5, §6).
func (s *Server) GenerateUserCerts(caller *Caller, req UserCertsRequest) (*Certs, error) {
	now := s.now()
	var certs *Certs
	err := s.State.Write(func(d *state.Data) error {
		if err := checkCallerIsUser(caller); err != nil {
			return err
		}
		if err := checkUserExists(d, caller); err != nil {
			return err
		}
		if err := CheckNotLocked(d, caller); err != nil {
			return err
		}
		if err := checkNoUserImpersonation(caller, req); err != nil {
			return err
		}
		if err := checkReissueAllowed(caller); err != nil {
			return err
		}
		if req.Usage != 0 {
			return trail.BadParameterf("unsupported cert usage %d (the stand-in issues usage All only)", req.Usage)
		}
		if !req.Expires.After(now) {
			return trail.AccessDeniedf("access denied: client credentials have expired, please relogin.")
		}
		if err := checkRouteToCluster(d, req.RouteToCluster); err != nil {
			return err
		}
		if err := checkPublicKeys(req.TLSPublicKey, req.SSHPublicKey); err != nil {
			return err
		}
		// Every check runs before the renewal moves the generation on.
		impersonating := req.UseRoleRequests || len(req.RoleRequests) > 0
		roles := caller.Identity.Roles
		if impersonating {
			if len(req.RoleRequests) == 0 {
				return trail.BadParameterf("at least one role request is required when UseRoleRequests is set")
			}
			if err := checkRolesImpersonable(d, caller, req.RoleRequests); err != nil {
				return err
			}
			roles = req.RoleRequests
		}
		if err := checkKubernetesCluster(d, roles, req.KubernetesCluster); err != nil {
			return err
		}
		var id pki.Identity
		var err error
		if impersonating {
			id = impersonatedIdentity(d, caller, req, now)
		} else if id, err = renewedIdentity(d, caller, req, now); err != nil {
			return err
		}
		id.KubernetesCluster = req.KubernetesCluster
		certs, err = issue(d, id, req.TLSPublicKey, req.SSHPublicKey, now)
		return err
	})
	return certs, err
}

func checkCallerIsUser(c *Caller) error {
	if c == nil || c.Host {
		return trail.AccessDeniedf("access denied: only user certificates may request user certificates")
	}
	return nil
}

// checkUserExists: a certificate outlives its user, but once the user is gone - a deleted bot
// takes its user and role with it - Teleport refuses every renewal and output issuance its
// certificates ask for, without saying more (TELEPORT.md §5, revocation). In the stand-in every
// user is a bot's: bot-<name>.
func checkUserExists(d *state.Data, c *Caller) error {
	if c == nil || c.Host {
		return nil
	}
	name, isBot := strings.CutPrefix(c.Identity.Username, "bot-")
	if _, ok := d.Bots[name]; isBot && ok {
		return nil
	}
	return trail.AccessDeniedf("access denied")
}

// checkNoUserImpersonation: a bot asks for certificates for itself only.
func checkNoUserImpersonation(c *Caller, req UserCertsRequest) error {
	if req.Username != c.Identity.Username {
		return trail.AccessDeniedf("access denied: impersonation is not allowed")
	}
	return nil
}

// checkReissueAllowed refuses certificates that were issued as not reissuable (role
// impersonated output identities).
func checkReissueAllowed(c *Caller) error {
	if c.Identity.DisallowReissue {
		return trail.AccessDeniedf("access denied: identity is not allowed to reissue certificates")
	}
	return nil
}

func checkRouteToCluster(d *state.Data, route string) error {
	if route != "" && route != d.ClusterName {
		return trail.NotFoundf("cluster %q is not found", route)
	}
	return nil
}

// checkKubernetesCluster: a KubernetesCluster in the request must be a cluster the new
// identity's roles can see.
func checkKubernetesCluster(d *state.Data, roles []string, name string) error {
	if name == "" {
		return nil
	}
	c, ok := d.Clusters[name]
	if !ok || !ClusterVisible(RolesByName(d, roles), c.AllLabels()) {
		return trail.BadParameterf("kubernetes cluster %q is not registered in this Teleport cluster", name)
	}
	return nil
}

// renewedIdentity is the caller's own identity with a new expiry: a renewable bot certificate
// moves its generation on (after the generation check) and may extend up to 24 h; any other
// certificate cannot outlive the one presented.
func renewedIdentity(d *state.Data, c *Caller, req UserCertsRequest, now time.Time) (pki.Identity, error) {
	id := c.Identity
	id.RouteToCluster = req.RouteToCluster
	id.KubernetesCluster = ""
	if !c.Identity.Renewable {
		id.Expires = minTime(req.Expires, c.Identity.Expires)
		return id, nil
	}
	inst, ok := d.Instances[c.Identity.BotInstanceID]
	if !ok {
		return pki.Identity{}, trail.AccessDeniedf("cert generation mismatch for bot %s/%s: instance not found, presented=%d",
			c.Identity.BotName, c.Identity.BotInstanceID, c.Identity.Generation)
	}
	if err := checkGenerationNotReused(inst, c.Identity.Generation); err != nil {
		return pki.Identity{}, err
	}
	inst.Generation++
	id.Generation = inst.Generation
	id.Expires = capExpiry(req.Expires, now)
	return id, nil
}

// impersonatedIdentity is the output identity: only the requested roles, each of which the
// caller's roles must allow in impersonate.roles; not renewable, not reissuable, never past
// the caller's certificate.
// The caller has passed checkRolesImpersonable.
func impersonatedIdentity(d *state.Data, c *Caller, req UserCertsRequest, now time.Time) pki.Identity {
	roles := dedupe(req.RoleRequests)
	users, groups := AllKubePrincipals(RolesByName(d, roles))
	return pki.Identity{
		Username: c.Identity.Username, Roles: roles, RouteToCluster: req.RouteToCluster,
		KubernetesUsers: users, KubernetesGroups: groups, TeleportCluster: d.ClusterName,
		DisallowReissue: true, BotName: c.Identity.BotName, BotInstanceID: c.Identity.BotInstanceID,
		Expires: minTime(capExpiry(req.Expires, now), c.Identity.Expires),
	}
}

// checkRolesImpersonable: every requested role exists and is in the allow.impersonate.roles of
// the caller's roles (and in no deny.impersonate.roles).
func checkRolesImpersonable(d *state.Data, c *Caller, requested []string) error {
	var allowed, denied []string
	for _, r := range RolesByName(d, c.Identity.Roles) {
		allowed = append(allowed, r.Allow.ImpersonateRoles...)
		denied = append(denied, r.Deny.ImpersonateRoles...)
	}
	for _, name := range requested {
		if _, ok := d.Roles[name]; !ok {
			return trail.NotFoundf("role %v is not found", name)
		}
		if !slices.Contains(allowed, name) || slices.Contains(denied, name) {
			return trail.AccessDeniedf("user %q has requested role impersonation for %q", c.Identity.Username, requested)
		}
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// GetRole returns a role the caller holds; other roles are not readable by a bot.
func (s *Server) GetRole(caller *Caller, name string) (*state.Role, error) {
	var role *state.Role
	err := s.State.Write(func(d *state.Data) error {
		// Reading the bot's role is the first step of an output issuance.
		if err := checkUserExists(d, caller); err != nil {
			return err
		}
		if err := CheckNotLocked(d, caller); err != nil {
			return err
		}
		if err := checkRoleReadable(caller, name); err != nil {
			return err
		}
		r, ok := d.Roles[name]
		if !ok {
			return trail.NotFoundf("role %v is not found", name)
		}
		cp := *r
		role = &cp
		return nil
	})
	return role, err
}

// checkRoleReadable: users may read the roles they hold.
func checkRoleReadable(c *Caller, name string) error {
	if c == nil || c.Host || !slices.Contains(c.Identity.Roles, name) {
		return trail.AccessDeniedf("access denied to perform action %q on %q", "read", "role")
	}
	return nil
}

// ClusterCACert is the Host CA certificate(s): two concatenated during a rotation.
func (s *Server) ClusterCACert(caller *Caller) ([]byte, error) {
	var out []byte
	err := s.State.Write(func(d *state.Data) error {
		if err := CheckNotLocked(d, caller); err != nil {
			return err
		}
		out = bytes.Join(d.HostCAPEMs(), nil)
		return nil
	})
	return out, err
}
