//! client-ip-filter-module: the Envoy dynamic-module adapter of [`client_ip_core`], built as the
//! native shared library `libclient_ip_filter_module.so` that Envoy's
//! `envoy.filters.http.dynamic_modules` and `envoy.filters.network.dynamic_modules` filters load (`dynamic_module_config.name:
//! client_ip_filter_module`, found through `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`).
//!
//! A thin adapter: it reads what Envoy has through Envoy's dynamic-module C ABI, asks the core for
//! a decision and applies it; it decides nothing itself. Its modules, each depending only on
//! those before it:
//! - [`abi`]: the C ABI's types and the callbacks used, declared by hand from Envoy's `abi.h`.
//! - [`host`]: one stream's host calls ([`host::StreamHost`]), each handing its outcome back;
//!   Envoy's through the ABI, a fake in the unit tests.
//! - [`guard`]: every hook's work run so that a panic stops there and fails closed.
//! - [`config`]: the filter configuration, the `.wasm`'s JSON, compiled once.
//! - [`link`]: the connection's private-link identity (PROXY v2 TLVs), read for the core.
//! - [`http`]: one request, decided and applied.
//! - [`network`]: the network filter (`envoy.filters.network.dynamic_modules`,
//!   docs/network-mode.md), one decision per connection, with its own hooks.
//! - [`sources`]: lists from list servers (docs/sources.md), fetched by the HTTP filter's
//!   configuration on Envoy's main thread; [`store`] the process's shared values, [`published`]
//!   the compiled configuration every worker reads, [`ticker`] the sources' timer.
//! - `entry`: the event hooks Envoy calls. Every one catches panics and fails closed (a refused
//!   request, a rejected configuration): no panic crosses into Envoy.

// The .so must be built with panic = "unwind" (the workspace's `native` profile, `make native`):
// under "abort" a panic in the module would end Envoy instead of refusing the request.
#[cfg(all(panic = "abort", not(test)))]
compile_error!("client-ip-filter-module needs panic = \"unwind\": build it with `make native` (cargo --profile native)");

pub mod abi;
pub mod config;
pub mod guard;
pub mod host;
pub mod http;
pub mod link;
pub mod network;
pub mod published;
pub mod sources;
pub mod store;
pub mod ticker;

#[cfg(not(test))]
mod entry;
