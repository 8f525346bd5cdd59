package auth

import (
	"testing"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

func botCaller(roles ...string) *Caller {
	return &Caller{Identity: pki.Identity{Username: "bot-argocd", Roles: roles, BotName: "argocd"}}
}

func TestCheckCallerIsUser(t *testing.T) {
	cases := []struct {
		name   string
		caller *Caller
		kind   trail.Kind
	}{
		{"user certificate", botCaller("bot-argocd"), allowed},
		{"host certificate", &Caller{Identity: pki.Identity{Username: "proxy"}, Host: true}, trail.AccessDenied},
		{"no certificate", nil, trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkCallerIsUser(tc.caller), tc.kind, "only user certificates may request user certificates")
		})
	}
}

func TestCheckNoUserImpersonation(t *testing.T) {
	cases := []struct {
		name, username string
		kind           trail.Kind
	}{
		{"certificates for itself", "bot-argocd", allowed},
		{"certificates for another user", "admin", trail.AccessDenied},
		{"certificates for no user", "", trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNoUserImpersonation(botCaller(), UserCertsRequest{Username: tc.username})
			wantRefusal(t, err, tc.kind, "impersonation is not allowed")
		})
	}
}

func TestCheckReissueAllowed(t *testing.T) {
	output := botCaller("access")
	output.Identity.DisallowReissue = true
	cases := []struct {
		name   string
		caller *Caller
		kind   trail.Kind
	}{
		{"bot identity", botCaller("bot-argocd"), allowed},
		{"output identity (issued not reissuable)", output, trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkReissueAllowed(tc.caller), tc.kind, "identity is not allowed to reissue certificates")
		})
	}
}

func TestCheckRouteToCluster(t *testing.T) {
	cases := []struct {
		name, route string
		kind        trail.Kind
	}{
		{"no route", "", allowed},
		{"route to this cluster", "root", allowed},
		{"route to a leaf cluster that does not exist", "leaf", trail.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkRouteToCluster(rulesData(), tc.route), tc.kind, `cluster "leaf" is not found`)
		})
	}
}

func TestCheckKubernetesCluster(t *testing.T) {
	cases := []struct {
		name, cluster string
		roles         []string
		kind          trail.Kind
	}{
		{"no cluster asked for", "", []string{"access"}, allowed},
		{"cluster the roles see", "prod-1", []string{"access"}, allowed},
		{"cluster the roles do not see", "dev-1", []string{"access"}, trail.BadParameter},
		{"cluster that is not registered", "nowhere", []string{"access"}, trail.BadParameter},
		{"cluster asked for without roles", "prod-1", nil, trail.BadParameter},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKubernetesCluster(rulesData(), tc.roles, tc.cluster)
			wantRefusal(t, err, tc.kind, "kubernetes cluster \""+tc.cluster+"\" is not registered in this Teleport cluster")
		})
	}
}

func TestCheckRolesImpersonable(t *testing.T) {
	cases := []struct {
		name      string
		caller    *Caller
		requested []string
		kind      trail.Kind
		contains  string
	}{
		{"role in the bot role's impersonate list", botCaller("bot-argocd"), []string{"access"}, allowed, ""},
		{"role that does not exist", botCaller("bot-argocd"), []string{"ghost"}, trail.NotFound, "role ghost is not found"},
		{"role not in the impersonate list", botCaller("bot-argocd"), []string{"other"}, trail.AccessDenied, `has requested role impersonation for ["other"]`},
		{"role allowed but also denied", botCaller("bot-argocd"), []string{"secret"}, trail.AccessDenied, "role impersonation"},
		{"one role of several refused", botCaller("bot-argocd"), []string{"access", "other"}, trail.AccessDenied, "role impersonation"},
		{"caller whose roles allow no impersonation", botCaller("access"), []string{"access"}, trail.AccessDenied, "role impersonation"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkRolesImpersonable(rulesData(), tc.caller, tc.requested), tc.kind, tc.contains)
		})
	}
}

func TestCheckRoleReadable(t *testing.T) {
	cases := []struct {
		name   string
		caller *Caller
		role   string
		kind   trail.Kind
	}{
		{"role the caller holds", botCaller("bot-argocd"), "bot-argocd", allowed},
		{"role the caller does not hold", botCaller("bot-argocd"), "access", trail.AccessDenied},
		{"host certificate", &Caller{Identity: pki.Identity{Roles: []string{"access"}}, Host: true}, "access", trail.AccessDenied},
		{"no certificate", nil, "access", trail.AccessDenied},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkRoleReadable(tc.caller, tc.role), tc.kind, `access denied to perform action "read" on "role"`)
		})
	}
}

func TestCheckUserExists(t *testing.T) {
	cases := []struct {
		name   string
		caller *Caller
		kind   trail.Kind
	}{
		{"certificate of an existing bot", botCaller("bot-argocd"), allowed},
		{"certificate of a deleted bot", &Caller{Identity: pki.Identity{Username: "bot-gone"}}, trail.AccessDenied},
		{"certificate of a user that is no bot", &Caller{Identity: pki.Identity{Username: "argocd"}}, trail.AccessDenied},
		{"host certificate", &Caller{Identity: pki.Identity{Username: "proxy"}, Host: true}, allowed},
		{"no certificate", nil, allowed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkUserExists(rulesData(), tc.caller)
			wantRefusal(t, err, tc.kind, "access denied")
			if err != nil && err.Error() != "access denied" {
				t.Fatalf("message %q, want exactly %q (Teleport says no more)", err.Error(), "access denied")
			}
		})
	}
}
