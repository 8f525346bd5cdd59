package server

// The web API's discovery endpoints (TELEPORT.md §2).

import (
	"encoding/json"
	"io"
	"testing"
)

func TestWebAPIDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       Config
		suite     any
		tlsRoute  bool
		kubeAddrs bool
	}{
		{"legacy with TLS routing", Config{}, "legacy", true, false},
		{"balanced-v1", Config{Suite: "balanced-v1"}, "balanced-v1", true, false},
		{"unspecified suite is absent", Config{Suite: "unspecified"}, nil, true, false},
		{"without TLS routing", Config{NoTLSRouting: true}, "legacy", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, tc.cfg)
			for _, path := range []string{"/webapi/find", "/v1/webapi/find", "/webapi/ping"} {
				resp, err := webClient(s).Get("https://" + s.WebAddr() + path)
				if err != nil {
					t.Fatal(err)
				}
				var body map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				proxy := body["proxy"].(map[string]any)
				authSettings, _ := body["auth"].(map[string]any)
				if body["cluster_name"] != "root" || proxy["tls_routing_enabled"] != tc.tlsRoute ||
					proxy["ssh"].(map[string]any)["public_addr"] != s.WebAddr() || authSettings["signature_algorithm_suite"] != tc.suite {
					t.Fatalf("%s: %v", path, body)
				}
				kube := proxy["kube"].(map[string]any)
				if tc.kubeAddrs && (kube["public_addr"] != s.KubeAddr() || kube["listen_addr"] != s.KubeAddr()) {
					t.Fatalf("%s kube settings: %v", path, kube)
				}
				if _, ok := kube["public_addr"]; !tc.kubeAddrs && ok {
					t.Fatalf("%s advertises a Kubernetes address with TLS routing: %v", path, kube)
				}
			}
			resp, err := webClient(s).Get("https://" + s.WebAddr() + "/webapi/auth/export?type=tls-host")
			if err != nil {
				t.Fatal(err)
			}
			pemData, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(pemData) != string(s.HostCAPEM()) {
				t.Fatalf("export: %s", pemData)
			}
		})
	}
}
