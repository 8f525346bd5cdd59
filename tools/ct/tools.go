//go:build tools

// Package tools pins the commands built from this module.
package tools

import _ "github.com/helm/chart-testing/v3/ct"
