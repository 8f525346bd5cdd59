package auth

import (
	"fmt"
	"log/slog"
	"slices"
	"testing"

	"teleport-argocd-agent/tests/standin/internal/pki"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

func TestParsePredicate(t *testing.T) {
	cases := []struct {
		name, expr, want string
		wantErr          bool
	}{
		{"no predicate", "", "", false},
		{"tbot name predicate", `(name == "kc-1") || (labels["teleport.internal/discovered-name"] == "kc-1")`, "kc-1", false},
		{"tbot name predicate without spaces", `(name=="kc-1")||(labels["teleport.internal/discovered-name"]=="kc-1")`, "kc-1", false},
		{"names that differ are refused", `(name == "a") || (labels["teleport.internal/discovered-name"] == "b")`, "", true},
		{"other predicate is refused", `labels["env"] == "prod"`, "", true},
		{"bare name predicate is refused", `name == "kc-1"`, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parsePredicate(tc.expr)
			if tc.wantErr {
				if !trail.Is(err, trail.BadParameter) {
					t.Fatalf("want BadParameter, got %v", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// listServer is an Auth Service whose inventory holds `clusters` clusters named c-000, c-001,
// ... (each carried by `servers` kube services) and a caller whose role sees them all.
func listServer(t *testing.T, clusters, servers int) (*Server, *Caller) {
	t.Helper()
	st, err := state.New("root", "balanced-v1", "test", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Write(func(d *state.Data) error {
		d.Roles["access"] = &state.Role{Name: "access", Allow: state.Conditions{KubernetesLabels: map[string][]string{"*": {"*"}}}}
		for i := 0; i < clusters; i++ {
			name := fmt.Sprintf("c-%03d", i)
			d.Clusters[name] = &state.KubeCluster{Name: name, Servers: servers}
		}
		return nil
	})
	return &Server{State: st}, &Caller{Identity: pki.Identity{Username: "bot-argocd", Roles: []string{"access"}}}
}

// TestListResourcesPages: pages hold at most Limit entries in name order, NextKey is the first
// entry of the next page and empty on the last, so following it lists every entry once.
func TestListResourcesPages(t *testing.T) {
	cases := []struct {
		name                     string
		clusters, servers, limit int
		wantPages                int
	}{
		{"everything on one page", 3, 1, 10, 1},
		{"exactly one full page", 4, 1, 4, 1},
		{"one entry over a page", 5, 1, 4, 2},
		{"several pages", 10, 1, 3, 4},
		{"a cluster's servers split across pages", 3, 2, 3, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, caller := listServer(t, tc.clusters, tc.servers)
			var keys []string
			start, pages := "", 0
			for {
				page, err := s.ListResources(caller, ListRequest{ResourceType: KindKubeServer, Namespace: "default", Limit: int32(tc.limit), StartKey: start})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if len(page.Servers) > tc.limit || len(page.Servers) == 0 {
					t.Fatalf("page %d holds %d entries (limit %d)", pages, len(page.Servers), tc.limit)
				}
				for _, srv := range page.Servers {
					keys = append(keys, srv.Cluster.Name+"/"+srv.HostID)
				}
				if page.NextKey == "" {
					break
				}
				if page.NextKey <= start || pages > tc.clusters*tc.servers {
					t.Fatalf("NextKey %q does not move past %q", page.NextKey, start)
				}
				start = page.NextKey
			}
			if pages != tc.wantPages {
				t.Fatalf("%d pages, want %d", pages, tc.wantPages)
			}
			if len(keys) != tc.clusters*tc.servers || !slices.IsSorted(keys) || len(slices.Compact(slices.Clone(keys))) != len(keys) {
				t.Fatalf("listed %v: want every entry once, in name order", keys)
			}
		})
	}
}

func TestListResourcesRefusals(t *testing.T) {
	s, caller := listServer(t, 1, 1)
	cases := []struct {
		name     string
		req      ListRequest
		contains string
	}{
		{"no resource type", ListRequest{Limit: 1}, "missing parameter resource_type"},
		{"zero limit", ListRequest{ResourceType: KindKubeServer}, "nonpositive parameter limit"},
		{"negative limit", ListRequest{ResourceType: KindKubeServer, Limit: -1}, "nonpositive parameter limit"},
		{"namespace other than default", ListRequest{ResourceType: KindKubeServer, Limit: 1, Namespace: "prod"}, `namespace "prod" is not supported`},
		{"predicate other than tbot's", ListRequest{ResourceType: KindKubeServer, Limit: 1, PredicateExpression: `labels["env"] == "prod"`}, "unsupported predicate expression"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ListResources(caller, tc.req)
			wantRefusal(t, err, trail.BadParameter, tc.contains)
		})
	}
}
