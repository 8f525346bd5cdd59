package auth

import (
	"regexp"
	"slices"
	"sort"
	"strings"

	"teleport-argocd-agent/tests/standin/internal/state"
)

// Wildcard is the label key and value that match every resource in a role's labels.
const Wildcard = "*"

// MatchLabels reports whether a role's label selector matches a resource's labels: every key of
// the selector must be present with one of its values (a value may be "*", a glob with "*", or a
// regular expression written ^...$). The selector `'*': '*'` matches every resource; an empty
// selector matches none.
func MatchLabels(selector map[string][]string, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for key, values := range selector {
		if key == Wildcard {
			if !slices.Contains(values, Wildcard) {
				return false
			}
			continue
		}
		got, ok := labels[key]
		if !ok {
			return false
		}
		if !slices.ContainsFunc(values, func(v string) bool { return matchValue(v, got) }) {
			return false
		}
	}
	return true
}

func matchValue(pattern, value string) bool {
	switch {
	case pattern == Wildcard:
		return true
	case strings.HasPrefix(pattern, "^") && strings.HasSuffix(pattern, "$"):
		re, err := regexp.Compile(pattern)
		return err == nil && re.MatchString(value)
	case strings.Contains(pattern, "*"):
		re, err := regexp.Compile("^" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*") + "$")
		return err == nil && re.MatchString(value)
	default:
		return pattern == value
	}
}

// RolesByName looks up roles; names with no role are skipped (a deleted role grants nothing).
func RolesByName(d *state.Data, names []string) []*state.Role {
	var out []*state.Role
	for _, n := range names {
		if r, ok := d.Roles[n]; ok {
			out = append(out, r)
		}
	}
	return out
}

// ClusterVisible reports whether the roles let their holder see a Kubernetes cluster with these
// labels: some role's allow.kubernetes_labels match and no role's deny.kubernetes_labels do.
func ClusterVisible(roles []*state.Role, labels map[string]string) bool {
	allowed := false
	for _, r := range roles {
		if MatchLabels(r.Deny.KubernetesLabels, labels) {
			return false
		}
		if MatchLabels(r.Allow.KubernetesLabels, labels) {
			allowed = true
		}
	}
	return allowed
}

// KubePrincipals are the kubernetes_users and kubernetes_groups the roles grant on a cluster
// with these labels (only roles whose kubernetes_labels match it count), minus denied ones.
func KubePrincipals(roles []*state.Role, labels map[string]string) (users, groups []string) {
	var denyUsers, denyGroups []string
	for _, r := range roles {
		if MatchLabels(r.Allow.KubernetesLabels, labels) {
			users = append(users, r.Allow.KubernetesUsers...)
			groups = append(groups, r.Allow.KubernetesGroups...)
		}
		denyUsers = append(denyUsers, r.Deny.KubernetesUsers...)
		denyGroups = append(denyGroups, r.Deny.KubernetesGroups...)
	}
	return without(dedupe(users), denyUsers), without(dedupe(groups), denyGroups)
}

// AllKubePrincipals are the kubernetes_users and groups of all the roles, for the certificate.
func AllKubePrincipals(roles []*state.Role) (users, groups []string) {
	for _, r := range roles {
		users = append(users, r.Allow.KubernetesUsers...)
		groups = append(groups, r.Allow.KubernetesGroups...)
	}
	return dedupe(users), dedupe(groups)
}

func dedupe(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := append([]string(nil), in...)
	sort.Strings(out)
	return slices.Compact(out)
}

func without(in, remove []string) []string {
	var out []string
	for _, v := range in {
		if !slices.Contains(remove, v) {
			out = append(out, v)
		}
	}
	return out
}
