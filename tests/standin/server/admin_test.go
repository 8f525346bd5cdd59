package server

// The admin interface's injected faults (TELEPORT.md §2, §8 codes and statuses).

import (
	"io"
	"strings"
	"testing"

	"teleport-argocd-agent/tests/standin/pb/authpb"
)

// Rule 9 and the admin interface: injected faults carry the codes and statuses of §2/§8.
func TestInjectedFaultsUseTeleportCodes(t *testing.T) {
	s := start(t, Config{})
	bot, _ := mustJoin(t, s, "token-1")
	adminPost(t, s, "/v1/faults", `{"target": "/proto.AuthService/Ping", "kind": "ConnectionProblem", "count": 2}`)
	adminPost(t, s, "/v1/faults", `{"target": "/webapi/find", "kind": "LimitExceeded", "message": "slow down"}`)
	client := authpb.NewAuthServiceClient(dialAuth(t, s, &bot))
	for i := 0; i < 2; i++ {
		_, err := client.Ping(ctx(t), &authpb.PingRequest{})
		wantStatus(t, err, "Unavailable", "injected failure")
	}
	if _, err := client.Ping(ctx(t), &authpb.PingRequest{}); err != nil {
		t.Fatalf("third Ping: %v", err)
	}
	resp, err := webClient(s).Get("https://" + s.WebAddr() + "/webapi/find")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || !strings.Contains(string(body), "slow down") {
		t.Fatalf("find: %d %s", resp.StatusCode, body)
	}
}
