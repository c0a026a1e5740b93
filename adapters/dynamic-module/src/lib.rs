//! client-ip-filter-module: the Envoy dynamic-module adapter of [`client_ip_core`], built as the
//! native shared library `libclient_ip_filter_module.so` that Envoy's
//! `envoy.filters.http.dynamic_modules` and `envoy.filters.network.dynamic_modules` filters load.
//!
//! A thin adapter: it reads what Envoy has through Envoy's dynamic-module C ABI, asks the core for
//! a decision and applies it; it decides nothing itself. Every entry point catches panics and fails
//! closed: no panic crosses into Envoy.
//!
//! - [`abi`]: Envoy's C ABI, declared by hand (common types; [`abi::network`], [`abi::callout`]).
//! - [`network`]: the network filter (docs/network-mode.md), one decision per connection.
//! - [`sources`]: lists from list servers (docs/sources.md), fetched by the HTTP filter's
//!   configuration; [`store`] the process's shared values, [`published`] the bound policy every
//!   worker reads, [`ticker`] the sources' timer.
//! - [`http_stub`]: a pass-through HTTP filter running the sources, until the HTTP filter lands.
//! - [`logging`]: `log` records to Envoy's log.

// The .so must be built with panic = "unwind" (the workspace's `native` profile, `make native`):
// under "abort" a panic in the module would end Envoy instead of refusing the request.
#[cfg(all(panic = "abort", not(test)))]
compile_error!("client-ip-filter-module needs panic = \"unwind\": build it with `make native` (cargo --profile native)");

pub mod abi;
pub mod http_stub;
pub mod logging;
pub mod network;
pub mod published;
pub mod sources;
pub mod store;
pub mod ticker;

/// The ABI version this module was written against, handed to Envoy when it loads the module
/// (Envoy 1.40 logs "Dynamic module ABI version v0.2.0 matched").
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy loaded the module: give the ABI version (Envoy checks it against its own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    ABI_VERSION.as_ptr().cast()
}
