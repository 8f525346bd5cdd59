// Package authgrpc serves the Auth Service and Join Service over gRPC (TELEPORT.md §3). The
// handlers translate messages and errors; the rules live in package auth.
package authgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"teleport-argocd-agent/tests/standin/internal/auth"
	"teleport-argocd-agent/tests/standin/internal/state"
	"teleport-argocd-agent/tests/standin/internal/trail"
	"teleport-argocd-agent/tests/standin/pb/authpb"
	"teleport-argocd-agent/tests/standin/pb/typespb"
	"teleport-argocd-agent/tests/standin/pb/wrapperspb"
)

// Info is what Ping reports besides the cluster name.
type Info interface {
	ProxyPublicAddr() string
}

// NewServer makes a gRPC server with both services, for connections whose TLS handshake the
// router already completed.
func NewServer(a *auth.Server, info Info) *grpc.Server {
	h := &handlers{auth: a, info: info}
	srv := grpc.NewServer(grpc.Creds(routedTLS{}), grpc.UnaryInterceptor(h.intercept))
	authpb.RegisterAuthServiceServer(srv, &authService{h: h})
	authpb.RegisterJoinServiceServer(srv, &joinService{h: h})
	return srv
}

type handlers struct {
	auth *auth.Server
	info Info
}

type callerKey struct{}

func callerFrom(ctx context.Context) *auth.Caller {
	c, _ := ctx.Value(callerKey{}).(*auth.Caller)
	return c
}

// intercept authenticates the caller, applies locks and injected faults, logs the call and
// turns rule errors into gRPC statuses with the user-facing message.
func (h *handlers) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	st := h.auth.State
	var caller *auth.Caller
	var err error
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			st.Read(func(d *state.Data) { caller, err = auth.CallerFromTLS(ti.State, d) })
		}
	}
	if caller == nil && err == nil {
		err = trail.AccessDeniedf("access denied: no client certificate")
	}
	if err == nil {
		st.Read(func(d *state.Data) { err = auth.CheckNotLocked(d, caller) })
	}
	if err == nil {
		_ = st.Write(func(d *state.Data) error { err = d.TakeFault(info.FullMethod); return nil })
	}
	var resp any
	if err == nil {
		resp, err = handler(context.WithValue(ctx, callerKey{}, caller), req)
	}
	entry := state.LogEntry{Route: "auth", Method: info.FullMethod, Identity: caller.String(), Result: "OK"}
	if caller != nil {
		entry.Instance = caller.Identity.BotInstanceID
	}
	if err != nil {
		s := toStatus(err)
		entry.Result, entry.Message = s.Code().String(), s.Message()
		err = s.Err()
	}
	st.Record(entry)
	return resp, err
}

func toStatus(err error) *status.Status {
	if s, ok := status.FromError(err); ok && !errors.As(err, new(*trail.Error)) {
		return s
	}
	return status.New(trail.GRPCCode(err), err.Error())
}

type authService struct {
	authpb.UnimplementedAuthServiceServer
	h *handlers
}

func (s *authService) Ping(ctx context.Context, _ *authpb.PingRequest) (*authpb.PingResponse, error) {
	var resp authpb.PingResponse
	s.h.auth.State.Read(func(d *state.Data) {
		resp.ClusterName = d.ClusterName
		resp.ServerVersion = d.Version
		resp.SignatureAlgorithmSuite = SuiteEnum(d.Suite)
	})
	resp.ProxyPublicAddr = s.h.info.ProxyPublicAddr()
	return &resp, nil
}

// SuiteEnum is the protobuf value of a suite name.
func SuiteEnum(suite string) typespb.SignatureAlgorithmSuite {
	switch suite {
	case "legacy":
		return typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_LEGACY
	case "balanced-v1":
		return typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_BALANCED_V1
	case "fips-v1":
		return typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_FIPS_V1
	case "hsm-v1":
		return typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_HSM_V1
	}
	return typespb.SignatureAlgorithmSuite_SIGNATURE_ALGORITHM_SUITE_UNSPECIFIED
}

func (s *authService) GenerateUserCerts(ctx context.Context, req *authpb.UserCertsRequest) (*authpb.Certs, error) {
	r := auth.UserCertsRequest{
		Username: req.GetUsername(), RouteToCluster: req.GetRouteToCluster(),
		KubernetesCluster: req.GetKubernetesCluster(), Usage: int32(req.GetUsage()),
		RoleRequests: req.GetRoleRequests(), UseRoleRequests: req.GetUseRoleRequests(),
		SSHPublicKey: req.GetSSHPublicKey(), TLSPublicKey: req.GetTLSPublicKey(),
	}
	if req.GetExpires() != nil {
		r.Expires = req.GetExpires().AsTime()
	}
	certs, err := s.h.auth.GenerateUserCerts(callerFrom(ctx), r)
	if err != nil {
		return nil, err
	}
	return certsPB(certs), nil
}

func certsPB(c *auth.Certs) *authpb.Certs {
	return &authpb.Certs{SSH: c.SSH, TLS: c.TLS, TLSCACerts: c.TLSCACerts, SSHCACerts: c.SSHCACerts}
}

func (s *authService) GetRole(ctx context.Context, req *authpb.GetRoleRequest) (*typespb.RoleV6, error) {
	role, err := s.h.auth.GetRole(callerFrom(ctx), req.GetName())
	if err != nil {
		return nil, err
	}
	return RolePB(role), nil
}

// RolePB is a role as types.RoleV6 (kind role, version v7).
func RolePB(r *state.Role) *typespb.RoleV6 {
	return &typespb.RoleV6{
		Kind: "role", Version: "v7",
		Metadata: &typespb.Metadata{Name: r.Name, Namespace: "default", Labels: r.Labels},
		Spec: &typespb.RoleSpecV6{
			Options: &typespb.RoleOptions{},
			Allow:   conditionsPB(r.Allow),
			Deny:    conditionsPB(r.Deny),
		},
	}
}

func conditionsPB(c state.Conditions) *typespb.RoleConditions {
	out := &typespb.RoleConditions{KubeGroups: c.KubernetesGroups, KubeUsers: c.KubernetesUsers}
	if len(c.KubernetesLabels) > 0 {
		out.KubernetesLabels = &wrapperspb.LabelValues{Values: map[string]*wrapperspb.StringValues{}}
		for k, v := range c.KubernetesLabels {
			out.KubernetesLabels.Values[k] = &wrapperspb.StringValues{Values: v}
		}
	}
	if len(c.ImpersonateRoles) > 0 || len(c.ImpersonateUsers) > 0 {
		out.Impersonate = &typespb.ImpersonateConditions{Users: c.ImpersonateUsers, Roles: c.ImpersonateRoles}
	}
	return out
}

func (s *authService) GetClusterCACert(ctx context.Context, _ *emptypb.Empty) (*authpb.GetClusterCACertResponse, error) {
	pem, err := s.h.auth.ClusterCACert(callerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return &authpb.GetClusterCACertResponse{TLSCA: pem}, nil
}

func (s *authService) ListResources(ctx context.Context, req *authpb.ListResourcesRequest) (*authpb.ListResourcesResponse, error) {
	page, err := s.h.auth.ListResources(callerFrom(ctx), auth.ListRequest{
		ResourceType: req.GetResourceType(), Namespace: req.GetNamespace(), Limit: req.GetLimit(),
		StartKey: req.GetStartKey(), Labels: req.GetLabels(), PredicateExpression: req.GetPredicateExpression(),
	})
	if err != nil {
		return nil, err
	}
	resp := &authpb.ListResourcesResponse{NextKey: page.NextKey}
	for _, srv := range page.Servers {
		resp.Resources = append(resp.Resources, &authpb.PaginatedResource{
			Resource: &authpb.PaginatedResource_KubernetesServer{KubernetesServer: &typespb.KubernetesServerV3{
				Kind: auth.KindKubeServer, Version: "v3",
				Metadata: &typespb.Metadata{Name: srv.Cluster.Name, Namespace: "default"},
				Spec: &typespb.KubernetesServerSpecV3{
					Version: s.version(), Hostname: srv.Hostname, HostID: srv.HostID,
					Cluster: ClusterPB(srv.Cluster),
				},
			}},
		})
	}
	for _, c := range page.Clusters {
		resp.Resources = append(resp.Resources, &authpb.PaginatedResource{
			Resource: &authpb.PaginatedResource_KubeCluster{KubeCluster: ClusterPB(c)},
		})
	}
	return resp, nil
}

func (s *authService) version() string {
	var v string
	s.h.auth.State.Read(func(d *state.Data) { v = d.Version })
	return v
}

// ClusterPB is a cluster as types.KubernetesClusterV3.
func ClusterPB(c state.KubeCluster) *typespb.KubernetesClusterV3 {
	out := &typespb.KubernetesClusterV3{
		Kind: auth.KindKubeCluster, Version: "v3",
		Metadata: &typespb.Metadata{Name: c.Name, Namespace: "default", Labels: c.Labels},
		Spec:     &typespb.KubernetesClusterSpecV3{},
	}
	if len(c.DynamicLabels) > 0 {
		out.Spec.DynamicLabels = map[string]*typespb.CommandLabelV2{}
		for k, v := range c.DynamicLabels {
			out.Spec.DynamicLabels[k] = &typespb.CommandLabelV2{Period: int64(v.Period), Command: v.Command, Result: v.Result}
		}
	}
	return out
}

type joinService struct {
	authpb.UnimplementedJoinServiceServer
	h *handlers
}

func (s *joinService) RegisterUsingToken(ctx context.Context, req *typespb.RegisterUsingTokenRequest) (*authpb.Certs, error) {
	r := auth.JoinRequest{
		Token: req.GetToken(), Role: req.GetRole(), HostID: req.GetHostID(), NodeName: req.GetNodeName(),
		PublicTLSKey: req.GetPublicTLSKey(), PublicSSHKey: req.GetPublicSSHKey(), IDToken: req.GetIDToken(),
	}
	if req.GetExpires() != nil {
		r.Expires = req.GetExpires().AsTime()
	}
	certs, _, err := s.h.auth.Join(r, callerFrom(ctx))
	if err != nil {
		return nil, err
	}
	return certsPB(certs), nil
}

// routedTLS is the transport security of connections the router has already handshaken: it
// hands gRPC the TLS state so handlers can read the peer certificate.
type routedTLS struct{}

func (routedTLS) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("routedTLS is server-side only")
}

func (routedTLS) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := conn.(*tls.Conn)
	if !ok {
		return nil, nil, errors.New("connection is not TLS")
	}
	return conn, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (routedTLS) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2"}
}
func (r routedTLS) Clone() credentials.TransportCredentials { return r }
func (routedTLS) OverrideServerName(string) error           { return nil }
