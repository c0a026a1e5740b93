//go:build tools

// Package tools pins the rate limit service (github.com/envoyproxy/ratelimit) that the global rate
// limit tests run: `make ratelimit-service` builds its command (src/service_cmd) from the Go module
// proxy at the commit go.mod requires. Nothing here is shipped.
package tools

import _ "github.com/envoyproxy/ratelimit/src/service_cmd"
