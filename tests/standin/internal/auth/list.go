package auth

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"sort"

	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
)

// ListRequest is proto.ListResourcesRequest.
type ListRequest struct {
	ResourceType        string
	Namespace           string
	Limit               int32
	StartKey            string
	Labels              map[string]string
	PredicateExpression string
}

// Resource types the stand-in lists.
const (
	KindKubeServer  = "kube_server"
	KindKubeCluster = "kube_cluster"
)

// KubeServer is one (kube service, cluster) pair of the inventory.
type KubeServer struct {
	HostID   string
	Hostname string
	Cluster  state.KubeCluster
}

// ListPage is one page of ListResources.
type ListPage struct {
	Servers []KubeServer
	// Clusters is set instead of Servers for ResourceType kube_cluster.
	Clusters []state.KubeCluster
	NextKey  string
}

// DiscoveredNameLabel is the label tbot's name predicate also matches.
const DiscoveredNameLabel = "teleport.internal/discovered-name"

// The only predicate the stand-in evaluates: tbot's name match (TELEPORT.md §3).
var namePredicate = regexp.MustCompile(`^\s*\(\s*name\s*==\s*"([^"]*)"\s*\)\s*\|\|\s*\(\s*labels\["teleport\.internal/discovered-name"\]\s*==\s*"([^"]*)"\s*\)\s*$`)

// parsePredicate returns the name the predicate matches ("" for no predicate).
func parsePredicate(expr string) (string, error) {
	if expr == "" {
		return "", nil
	}
	m := namePredicate.FindStringSubmatch(expr)
	if m == nil || m[1] != m[2] {
		return "", trail.BadParameterf("unsupported predicate expression %q: the stand-in evaluates only "+
			`(name == "X") || (labels["teleport.internal/discovered-name"] == "X")`, expr)
	}
	return m[1], nil
}

// HostID is the stable host id of a cluster's i-th kube server.
func HostID(cluster string, i int) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", cluster, i)))
	b := sum[:16]
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// ListResources lists kube servers (or kube clusters) the caller's roles may see, filtered by
// labels and the name predicate, one page at a time in name order.
func (s *Server) ListResources(caller *Caller, req ListRequest) (*ListPage, error) {
	if req.ResourceType == "" {
		return nil, trail.BadParameterf("missing parameter resource_type")
	}
	if req.Limit <= 0 {
		return nil, trail.BadParameterf("nonpositive parameter limit")
	}
	if req.Namespace != "" && req.Namespace != "default" {
		return nil, trail.BadParameterf("namespace %q is not supported", req.Namespace)
	}
	name, err := parsePredicate(req.PredicateExpression)
	if err != nil {
		return nil, err
	}
	type entry struct {
		key    string
		server KubeServer
	}
	var entries []entry
	err = s.State.Write(func(d *state.Data) error {
		if err := CheckNotLocked(d, caller); err != nil {
			return err
		}
		var roles []*state.Role
		if caller != nil && !caller.Host {
			roles = RolesByName(d, caller.Identity.Roles)
		}
		for _, c := range d.Clusters {
			labels := c.AllLabels()
			if caller == nil || (!caller.Host && !ClusterVisible(roles, labels)) {
				continue
			}
			if !labelsEqual(req.Labels, labels) {
				continue
			}
			if name != "" && c.Name != name && labels[DiscoveredNameLabel] != name {
				continue
			}
			servers := c.Servers
			if req.ResourceType == KindKubeCluster {
				servers = 1
			}
			for i := 0; i < servers; i++ {
				hostID := HostID(c.Name, i)
				entries = append(entries, entry{
					key:    c.Name + "/" + hostID,
					server: KubeServer{HostID: hostID, Hostname: fmt.Sprintf("kube-service-%d", i), Cluster: copyCluster(c)},
				})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if req.ResourceType != KindKubeServer && req.ResourceType != KindKubeCluster {
		return &ListPage{}, nil // no other resources are registered in the stand-in
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	page := &ListPage{}
	for _, e := range entries {
		if e.key < req.StartKey {
			continue
		}
		if len(page.Servers)+len(page.Clusters) == int(req.Limit) {
			page.NextKey = e.key
			break
		}
		if req.ResourceType == KindKubeCluster {
			page.Clusters = append(page.Clusters, e.server.Cluster)
		} else {
			page.Servers = append(page.Servers, e.server)
		}
	}
	return page, nil
}

func labelsEqual(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func copyCluster(c *state.KubeCluster) state.KubeCluster {
	cp := *c
	cp.Labels = map[string]string{}
	for k, v := range c.Labels {
		cp.Labels[k] = v
	}
	cp.DynamicLabels = map[string]state.DynamicLabel{}
	for k, v := range c.DynamicLabels {
		cp.DynamicLabels[k] = v
	}
	return cp
}
