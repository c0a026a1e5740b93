//! client-ip-filter-module: the Envoy dynamic-module adapter of [`client_ip_core`], built as the
//! native shared library `libclient_ip_filter_module.so` that Envoy's
//! `envoy.filters.http.dynamic_modules` filter loads.
//!
//! A thin adapter: it reads what Envoy has through Envoy's dynamic-module C ABI, asks the core for
//! a decision and applies it; it decides nothing itself. Every entry point catches panics and fails
//! closed: no panic crosses into Envoy.

// The .so must be built with panic = "unwind" (the workspace's `native` profile, `make native`):
// under "abort" a panic in the module would end Envoy instead of refusing the request.
#[cfg(all(panic = "abort", not(test)))]
compile_error!("client-ip-filter-module needs panic = \"unwind\": build it with `make native` (cargo --profile native)");
