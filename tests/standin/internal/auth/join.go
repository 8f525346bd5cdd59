package auth

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// JoinRequest is RegisterUsingTokenRequest, from either the web API or the Join Service.
type JoinRequest struct {
	Token        string
	Role         string
	HostID       string
	NodeName     string
	PublicTLSKey []byte
	PublicSSHKey []byte
	IDToken      string
	Expires      time.Time
}

// Join registers a bot (TELEPORT.md §5). caller is the authenticated identity of a Join
// Service call, nil for the web API: only a bot's own certificate carries its instance on to
// the new certificates; anything else starts a new bot instance, as Teleport ignores bot
// parameters of callers that are not that bot.
func (s *Server) Join(req JoinRequest, caller *Caller) (*Certs, *state.BotInstance, error) {
	now := s.now()
	var certs *Certs
	var instance state.BotInstance
	err := s.State.Write(func(d *state.Data) error {
		// A re-join is the kubernetes method's renewal: a deleted bot's certificate gets none.
		if err := checkUserExists(d, caller); err != nil {
			return err
		}
		token, err := checkTokenValid(d, req, now)
		if err != nil {
			return err
		}
		if err := checkTokenAllowsRole(token, req); err != nil {
			return err
		}
		bot, err := checkBotExists(d, token)
		if err != nil {
			return err
		}
		renewable := false
		switch token.JoinMethod {
		case "token":
			renewable = true
		case "kubernetes":
			if err := checkKubernetesToken(token, req.IDToken, d.ClusterName, now); err != nil {
				return err
			}
		}
		if err := checkPublicKeys(req.PublicTLSKey, req.PublicSSHKey); err != nil {
			return err
		}
		inst, err := joinInstance(d, bot, token, caller, renewable, now)
		if err != nil {
			return err
		}
		expires := req.Expires
		if expires.IsZero() {
			expires = now.Add(DefaultBotTTL)
		}
		roleName := state.BotResourceName(bot.Name)
		users, groups := AllKubePrincipals(RolesByName(d, []string{roleName}))
		id := pki.Identity{
			Username: roleName, Roles: []string{roleName}, TeleportCluster: d.ClusterName,
			KubernetesUsers: users, KubernetesGroups: groups,
			Renewable: renewable, Generation: inst.Generation,
			BotName: bot.Name, BotInstanceID: inst.ID, Expires: capExpiry(expires, now),
		}
		if !id.Expires.After(now) {
			return trail.BadParameterf("expires %s is in the past", req.Expires.Format(time.RFC3339))
		}
		certs, err = issue(d, id, req.PublicTLSKey, req.PublicSSHKey, now)
		if err != nil {
			return err
		}
		if token.JoinMethod == "token" {
			delete(d.Tokens, token.Name) // single use: spent by the first successful join
		}
		instance = *inst
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return certs, &instance, nil
}

const tokenNotFound = "token expired or not found"

// checkTokenValid finds the token by name; an unknown or expired one is refused as Teleport
// refuses it, without saying which.
func checkTokenValid(d *state.Data, req JoinRequest, now time.Time) (*state.Token, error) {
	token, ok := d.Tokens[req.Token]
	if !ok || (!token.Expires.IsZero() && !now.Before(token.Expires)) {
		return nil, trail.AccessDeniedf("%q can not join the cluster with role %q, %s", req.NodeName, req.Role, tokenNotFound)
	}
	return token, nil
}

func checkTokenAllowsRole(token *state.Token, req JoinRequest) error {
	if req.Role == "" {
		return trail.BadParameterf("missing parameter role")
	}
	if !slices.Contains(token.Roles, req.Role) {
		return trail.AccessDeniedf("%q can not join the cluster, the token does not allow %q role", req.NodeName, req.Role)
	}
	if req.Role != "Bot" {
		return trail.BadParameterf("the stand-in joins only bots, not role %q", req.Role)
	}
	return nil
}

func checkBotExists(d *state.Data, token *state.Token) (*state.Bot, error) {
	if token.BotName == "" {
		return nil, trail.BadParameterf("token %q has no bot_name", token.Name)
	}
	bot, ok := d.Bots[token.BotName]
	if !ok {
		return nil, trail.NotFoundf("bot %q not found", token.BotName)
	}
	return bot, nil
}

// joinInstance picks the bot instance of a join: the caller's own when a bot re-joins over an
// authenticated connection (generation + 1), else a new one.
func joinInstance(d *state.Data, bot *state.Bot, token *state.Token, caller *Caller, renewable bool, now time.Time) (*state.BotInstance, error) {
	if caller == nil || caller.Host || caller.Identity.BotInstanceID == "" || caller.Identity.BotName != bot.Name {
		return d.NewInstance(bot.Name, token.JoinMethod, token.Name, now), nil
	}
	presented := caller.Identity.Generation
	if presented == 0 {
		return nil, trail.AccessDeniedf("a current identity generation must be provided")
	}
	inst, ok := d.Instances[caller.Identity.BotInstanceID]
	if !ok {
		if renewable {
			return nil, trail.AccessDeniedf("cert generation mismatch for bot %s/%s: instance not found, presented=%d",
				bot.Name, caller.Identity.BotInstanceID, presented)
		}
		return d.NewInstance(bot.Name, token.JoinMethod, token.Name, now), nil
	}
	if renewable {
		if err := checkGenerationNotReused(inst, presented); err != nil {
			return nil, err
		}
	}
	// For non-renewable joins a mismatch is only logged by Teleport; the count moves on.
	inst.Generation++
	return inst, nil
}

// checkGenerationNotReused compares the generation a renewable certificate presents with the
// stored one; a mismatch means an older (reused or stolen) certificate: the instance is locked.
func checkGenerationNotReused(inst *state.BotInstance, presented uint64) error {
	if presented == inst.Generation {
		return nil
	}
	inst.Locked = true
	inst.LockReason = fmt.Sprintf("The bot instance %s/%s has been locked due to a certificate generation mismatch, possibly indicating a stolen certificate.", inst.BotName, inst.ID)
	return trail.AccessDeniedf("cert generation mismatch for bot %s/%s: stored=%d, presented=%d",
		inst.BotName, inst.ID, inst.Generation, presented)
}

// serviceAccountClaims are the claims of a Kubernetes service account token.
type serviceAccountClaims struct {
	jwt.Claims
	Kubernetes *struct {
		Namespace string `json:"namespace"`
		Pod       *struct {
			Name string `json:"name"`
		} `json:"pod"`
		ServiceAccount *struct {
			Name string `json:"name"`
		} `json:"serviceaccount"`
	} `json:"kubernetes.io"`
}

const (
	jwtLeeway       = 10 * time.Second
	maxJWTTTL       = 30 * time.Minute
	serviceAccountP = "system:serviceaccount:"
)

// checkKubernetesToken runs the kubernetes join method's checks (TELEPORT.md §5).
func checkKubernetesToken(token *state.Token, idToken, clusterName string, now time.Time) error {
	if idToken == "" {
		return trail.BadParameterf("IDToken not provided for Kubernetes join request")
	}
	rule := token.Kubernetes
	if rule == nil || rule.Type != "static_jwks" {
		return trail.BadParameterf("kubernetes join type %q is not supported by the stand-in (static_jwks)", ruleType(rule))
	}
	subject, err := checkStaticJWKS(rule.JWKS, idToken, clusterName, now)
	if err != nil {
		return trail.Wrap(err, "reviewing kubernetes token with static_jwks")
	}
	return checkKubernetesAllowRules(rule, subject)
}

func ruleType(r *state.KubernetesRule) string {
	if r == nil {
		return ""
	}
	return r.Type
}

var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.EdDSA,
}

// checkStaticJWKS verifies a service account token against the token's JWKS and returns its
// subject. Signature and standard-claim failures carry no kind (Teleport wraps the JWT
// library's error); the pod-bound and lifetime rules are BadParameter.
func checkStaticJWKS(jwksJSON, idToken, clusterName string, now time.Time) (string, error) {
	parsed, err := jwt.ParseSigned(idToken, jwtAlgorithms)
	if err != nil {
		return "", trail.Wrap(err, "parsing jwt")
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwksJSON), &jwks); err != nil {
		return "", trail.Wrap(err, "parsing provided jwks")
	}
	var claims serviceAccountClaims
	if err := parsed.Claims(jwks, &claims); err != nil {
		return "", trail.Wrap(err, "validating jwt signature")
	}
	if err := claims.ValidateWithLeeway(jwt.Expected{AnyAudience: jwt.Audience{clusterName}, Time: now}, jwtLeeway); err != nil {
		return "", trail.Wrap(err, "validating jwt claims")
	}
	if claims.Kubernetes == nil || claims.Kubernetes.Pod == nil || claims.Kubernetes.Pod.Name == "" {
		return "", trail.BadParameterf("static_jwks joining requires the use of projected pod bound service account token")
	}
	if claims.Expiry == nil {
		return "", trail.BadParameterf("static_jwks joining requires the use of a service account token with `exp`")
	}
	if claims.IssuedAt == nil {
		return "", trail.BadParameterf("static_jwks joining requires the use of a service account token with `iat`")
	}
	if claims.Expiry.Time().Sub(claims.IssuedAt.Time()) > maxJWTTTL {
		return "", trail.BadParameterf("static_jwks joining requires the use of a service account token with a TTL of less than %s", maxJWTTTL)
	}
	return claims.Subject, nil
}

// checkKubernetesAllowRules requires the token's subject to be one of the allowed service
// accounts ("<namespace>:<name>").
func checkKubernetesAllowRules(rule *state.KubernetesRule, subject string) error {
	for _, sa := range rule.ServiceAccounts {
		if serviceAccountP+sa == subject && strings.HasPrefix(subject, serviceAccountP) {
			return nil
		}
	}
	return trail.AccessDeniedf("kubernetes token did not match any allow rules")
}
