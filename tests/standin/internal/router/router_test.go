package router

import (
	"crypto/tls"
	"encoding/hex"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	authALPN := AuthALPNPrefix + hex.EncodeToString([]byte("root")) + ClusterSuffix
	cases := []struct {
		name    string
		mode    Mode
		alpn    []string
		sni     string
		want    string
		wantErr string
	}{
		{"auth ALPN first goes to Auth", ModeRouted, []string{authALPN, "h2"}, "726f6f74.teleport.cluster.local", RouteAuth, ""},
		{"auth ALPN not first goes to the web API", ModeRouted, []string{"h2", authALPN}, "", RouteWeb, ""},
		{"unknown cluster in the auth ALPN is refused", ModeRouted,
			[]string{AuthALPNPrefix + hex.EncodeToString([]byte("leaf")) + ClusterSuffix, "h2"}, "", "",
			`auth server for "leaf" cluster name not found`},
		{"undecodable cluster in the auth ALPN is refused", ModeRouted, []string{AuthALPNPrefix + "zz" + ClusterSuffix}, "", "", "cluster name not found"},
		{"kube SNI goes to Kubernetes", ModeRouted, []string{"h2"}, "kube-teleport-proxy-alpn.teleport.cluster.local", RouteKube, ""},
		{"kube SNI with the public host", ModeRouted, nil, "kube-teleport-proxy-alpn.example.com", RouteKube, ""},
		{"plain https goes to the web API", ModeRouted, []string{"http/1.1"}, "example.com", RouteWeb, ""},
		{"no ALPN no SNI goes to the web API", ModeRouted, nil, "", RouteWeb, ""},
		{"without TLS routing the auth ALPN reaches only the web API", ModeWebOnly, []string{authALPN, "h2"}, "", RouteWeb, ""},
		{"without TLS routing the kube SNI reaches only the web API", ModeWebOnly, nil, "kube-teleport-proxy-alpn.teleport.cluster.local", RouteWeb, ""},
		{"the direct Auth port is Auth", ModeAuth, []string{"h2"}, "", RouteAuth, ""},
		{"the Kubernetes port is Kubernetes", ModeKube, nil, "", RouteKube, ""},
		{"behind an L7 load balancer the auth ALPN reaches only the web API", ModeL7, []string{authALPN, "h2"}, "", RouteWeb, ""},
		{"behind an L7 load balancer the kube SNI reaches only the web API", ModeL7, nil, "kube-teleport-proxy-alpn.teleport.cluster.local", RouteWeb, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decide(tc.mode, "root", &tls.ClientHelloInfo{SupportedProtos: tc.alpn, ServerName: tc.sni})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
