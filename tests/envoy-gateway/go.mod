// Pins Envoy Gateway's Go module for its CRDs (charts/gateway-helm/charts/crds/crds/generated/),
// which tests/manifest_check.py validates the native/envoy-gateway manifests against. v1.8.0 is the
// first release whose EnvoyExtensionPolicy has `dynamicModule` and EnvoyProxy `dynamicModules`
// (envoyproxy/gateway#8278). `make eg-crds` downloads it through the Go module proxy; nothing is built.
module clientipfilter.test/envoy-gateway

go 1.25

require github.com/envoyproxy/gateway v1.8.0
