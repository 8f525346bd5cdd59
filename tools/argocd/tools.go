//go:build tools

// Package tools pins the command built from this module: Argo CD's multi-call binary, which
// runs as the application controller, repo-server or ApplicationSet controller by its argv[0].
package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
