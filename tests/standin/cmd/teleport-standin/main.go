// Command teleport-standin runs the Teleport stand-in: one process that speaks Teleport v18's
// wire protocol as TELEPORT.md records it, for the tests and the demo. It is test
// infrastructure, never part of the product image.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"teleport-argocd-agent/tests/standin/server"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "teleport-standin:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("teleport-standin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	var resources, logFile string
	fs.StringVar(&resources, "config", "", "tctl-style YAML of roles, bots, tokens and standin_kube_clusters to start with")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "directory for ready.json and the CA certificates (required)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:0", "the proxy's public web address (one TLS port, routed by ClientHello)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", "127.0.0.1:0", "the admin interface (loopback, unauthenticated)")
	fs.StringVar(&cfg.AuthListen, "auth-listen", "", "also open a direct Auth port (plain TLS, ALPN h2)")
	fs.StringVar(&cfg.KubeListen, "kube-listen", "", "the Kubernetes port with --no-tls-routing (default 127.0.0.1:0)")
	fs.BoolVar(&cfg.NoTLSRouting, "no-tls-routing", false, "serve only the web API on --listen; Kubernetes gets its own port")
	fs.BoolVar(&cfg.L7LoadBalancer, "l7-load-balancer", false, "play a TLS-terminating load balancer in front of --listen: web certificate, no ALPN, only the web API (no connection upgrade)")
	fs.StringVar(&cfg.ClusterName, "cluster-name", "root", "the Teleport cluster name")
	fs.StringVar(&cfg.Suite, "suite", "legacy", "signature algorithm suite: legacy, balanced-v1, fips-v1, hsm-v1, unspecified")
	fs.StringVar(&cfg.Version, "version", server.DefaultVersion, "the Teleport version to report")
	fs.StringVar(&logFile, "log-file", "", "also append the request log to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.StateDir == "" {
		return fmt.Errorf("--state-dir is required")
	}
	if resources != "" {
		data, err := os.ReadFile(resources)
		if err != nil {
			return err
		}
		cfg.Resources = data
	}
	var out io.Writer = stderr
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		out = io.MultiWriter(stderr, f)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(out, nil))
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		return err
	}
	cfg.Logger.Info("teleport stand-in ready", "proxy", srv.WebAddr(), "auth", srv.AuthAddr(),
		"kube", srv.KubeAddr(), "admin", srv.AdminURL(), "cluster", srv.ClusterName())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	srv.Close()
	return nil
}
