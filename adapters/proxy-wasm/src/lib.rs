//! client-ip-filter: the proxy-wasm adapter of [`client_ip_core`], built as the `.wasm` Envoy and
//! Istio load (an HTTP filter, or a network filter for TCP and TLS passthrough).
//!
//! A thin adapter: it reads what the host has, asks the core for a decision and applies it; it
//! decides nothing itself. Its two modules:
//! - [`host`]: the proxy-wasm host calls, each returning the host's status instead of panicking.
//! - `adapter`: the root, HTTP stream, network connection, compiled-configuration, metrics,
//!   identity and sources contexts. The contexts are built for wasm32 only; the per-request logic
//!   they run is generic over [`host::StreamHost`] and unit-tested natively with a failing fake.

pub mod host;

// The contexts are wasm32 only; natively, the per-request logic is unit-tested with a fake host.
#[cfg(any(target_arch = "wasm32", test))]
mod adapter;
