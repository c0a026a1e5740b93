//! The native network filter (`envoy.filters.network.dynamic_modules`, docs/network-mode.md): the
//! same configuration as the wasm build's network mode, one decision per connection when it opens,
//! the connection closed when refused. The decision is the core's (`Policy::decide_connection`);
//! this module reads what Envoy has, counts, records filter state and closes — nothing else.
//!
//! Threads: a configuration ([`NetworkConfig`]) is made on Envoy's main thread and shared,
//! read-only, by the workers' connections ([`Connection`]); its counters are tallied under a mutex
//! (one short lock per connection) and handed to Envoy at once, from the connection's worker.
//!
//! Every entry point runs in `catch_unwind` and fails closed: a panic while deciding closes the
//! connection and holds its data; a panic while configuring rejects the configuration.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{debug, error, info, warn};

use client_ip_core::config;
use client_ip_core::connection::Connection as ConnectionInfo;
use client_ip_core::facts::{describe_connection, each_fact};
use client_ip_core::filter_type::{FilterType, Mismatch};
use client_ip_core::identity::{read_value, Kind, Link, Route};
use client_ip_core::policy::{Decision, Downstream, Policy};
use client_ip_core::tally::Tally;

use crate::abi::network::{self as abi, CloseType, DataStatus};
use crate::abi::{EnvoyBuffer, ModuleBuffer};

/// The connection's private-link identity (docs/private-link.md), under the name the HTTP filter
/// and the wasm build write (the other filter state is the core's [`Fact`]s, by their full names).
pub const CLIENT_LINK: &str = "wasm.client_link";

/// What a connection's decision needs from Envoy: the calls the filter makes, so that the logic
/// is tested natively with a fake (`tests` below) and run in Envoy through [`Envoy`].
pub trait ConnectionHost {
    /// A filter state value of the connection (None when absent).
    fn filter_state(&mut self, key: &str) -> Option<Vec<u8>>;
    /// The remote address as `ip:port` (`[ip]:port` for IPv6); None without an IP.
    fn remote_address(&mut self) -> Option<String>;
    /// The TLS SNI (None without one).
    fn server_name(&mut self) -> Option<String>;
    /// Writes a filter state value; false when Envoy refuses.
    fn set_filter_state(&mut self, key: &str, value: &str) -> bool;
    /// Adds `n` to counter `id`; false when Envoy refuses.
    fn increment(&mut self, id: usize, n: u64) -> bool;
    /// Closes the connection.
    fn close(&mut self);
}

/// One network filter configuration, compiled once on the main thread.
pub struct NetworkConfig {
    policy: Policy,
    /// Set when the configuration says `filter_type: "http"`: every connection is refused.
    mismatch: Option<Mismatch>,
    mismatch_logged: AtomicBool,
    /// Counts a decision into slots; drained at once into Envoy's counters.
    tally: Mutex<Tally>,
    /// Envoy's counter id of each tally slot (None: Envoy refused to define it).
    ids: Vec<Option<usize>>,
    /// The `set_filter_state` copies of the identity TLVs the configuration reads.
    link_keys: Vec<(Kind, &'static str)>,
}

/// Why a configuration is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigRefused(pub String);

impl NetworkConfig {
    /// Compiles a configuration; `define` defines a counter and gives its id. Errors carry the
    /// configuration's key path, as in the wasm build.
    pub fn new(
        bytes: &[u8],
        mut define: impl FnMut(&str) -> Option<usize>,
    ) -> Result<NetworkConfig, ConfigRefused> {
        let (policy, plan, warnings) = config::parse_sourced(bytes)
            .map_err(|e| ConfigRefused(format!("invalid configuration: {e}")))?;
        for warning in &warnings {
            warn!("configuration: {warning}");
        }
        // Envoy 1.40 gives a network filter configuration no HTTP callout of its own: lists from a
        // list server are fetched by the HTTP filter only (docs/native.md).
        if (0..plan.sources.len()).any(|i| plan.is_used(i)) {
            return Err(ConfigRefused(
                "invalid configuration: sources: the native network filter cannot fetch lists \
                 (Envoy 1.40 offers network filter configurations no HTTP callout); use the \
                 wasm build's network filter or inline lists"
                    .to_string(),
            ));
        }
        let mismatch = policy
            .filter_type
            .check_loaded_as(FilterType::Network)
            .err();
        if mismatch.is_none() {
            info!(
                "configured: filter_type network, {} rule(s)",
                policy.access.rules.len()
            );
        }
        let tally = Tally::for_policy(&policy);
        let ids = tally
            .names()
            .iter()
            .map(|name| {
                let id = define(name);
                if id.is_none() {
                    debug!("cannot define counter {name}");
                }
                id
            })
            .collect();
        let link_keys = policy
            .link
            .kinds
            .iter()
            .map(|kind| (kind, kind.copy_key()))
            .collect();
        Ok(NetworkConfig {
            policy,
            mismatch,
            mismatch_logged: AtomicBool::new(false),
            tally: Mutex::new(tally),
            ids,
            link_keys,
        })
    }

    /// Hands the tallied counts to Envoy; a count Envoy refuses stays for the next connection.
    fn flush(&self, host: &mut impl ConnectionHost) {
        let Ok(tally) = self.tally.lock() else {
            return;
        };
        tally.drain(|slot, n| match self.ids.get(slot).copied().flatten() {
            Some(id) => host.increment(id, n),
            None => true,
        });
    }

    /// The connection's private-link identity, from the `set_filter_state` copies.
    fn link(&self, host: &mut impl ConnectionHost) -> Link {
        if self.link_keys.is_empty() {
            return Link::default();
        }
        Link::from_reads(self.link_keys.iter().map(|(kind, key)| {
            let value = host.filter_state(key);
            read_value(*kind, Route::MetadataCopy, value.as_deref())
        }))
    }

    /// Decides a new connection: counts, records, and closes it when refused. Returns whether
    /// it is refused.
    pub fn decide(&self, host: &mut impl ConnectionHost) -> bool {
        if let Some(mismatch) = &self.mismatch {
            if !self.mismatch_logged.swap(true, Ordering::Relaxed) {
                error!("{}", mismatch.message());
            }
            host.close();
            return true;
        }
        let policy = &self.policy;
        let filter_state = host.filter_state(&policy.downstream_filter_state);
        let downstream = Downstream::read(filter_state.as_deref(), || {
            host.remote_address().map(String::into_bytes)
        });
        let server_name = if policy.reads_server_name() {
            host.server_name().unwrap_or_default()
        } else {
            String::new()
        };
        let link = self.link(host);
        let decision = policy.decide_connection(&ConnectionInfo {
            downstream,
            server_name: &server_name,
            link,
        });
        if let Ok(tally) = self.tally.lock() {
            tally.count(&decision);
        }
        self.flush(host);
        record(
            host,
            policy,
            &decision,
            &server_name,
            !self.link_keys.is_empty(),
        );
        if Policy::closes(&decision) {
            host.close();
            return true;
        }
        false
    }
}

/// Filter state for access logs, and the debug line of the decision (as the wasm build's).
fn record(
    host: &mut impl ConnectionHost,
    policy: &Policy,
    decision: &Decision,
    server_name: &str,
    links: bool,
) {
    let mut set = |key: &str, value: &str| {
        if !host.set_filter_state(key, value) {
            debug!("cannot set filter state {key}");
        }
    };
    let client = decision.client.map(|c| c.text());
    let client = client.as_ref().map(|t| t.as_str());
    // As in HTTP mode (the core's facts), and the identity when the configuration reads one.
    each_fact(policy, decision, client, |fact, value| {
        set(fact.full_name(), value)
    });
    if links {
        if let Some(id) = decision.link.identity.as_ref() {
            set(CLIENT_LINK, &id.text());
        }
    }
    debug!(
        "{}",
        describe_connection(policy, decision, client, server_name)
    );
}

/// One connection: the configuration current when it opened, and whether it was refused.
pub struct Connection {
    config: Arc<NetworkConfig>,
    refused: bool,
}

/// Envoy's side of one connection, valid while one of its hooks runs on its worker.
pub struct Envoy(abi::FilterEnvoyPtr);

fn module_buffer(s: &str) -> ModuleBuffer {
    ModuleBuffer {
        ptr: s.as_ptr().cast(),
        length: s.len(),
    }
}

/// Bytes Envoy lends for the duration of the hook, copied.
///
/// # Safety
/// `b` must be null or point to `b.length` readable bytes.
unsafe fn copied(b: &EnvoyBuffer) -> Option<Vec<u8>> {
    if b.ptr.is_null() {
        return None;
    }
    Some(std::slice::from_raw_parts(b.ptr.cast::<u8>(), b.length).to_vec())
}

fn empty() -> EnvoyBuffer {
    EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    }
}

impl ConnectionHost for Envoy {
    fn filter_state(&mut self, key: &str) -> Option<Vec<u8>> {
        let mut out = empty();
        // SAFETY: self.0 is the filter of the running hook; `out` outlives the call.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_network_get_filter_state_bytes(
                self.0,
                module_buffer(key),
                &mut out,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: Envoy's buffer is valid until the hook returns.
        unsafe { copied(&out) }
    }

    fn remote_address(&mut self) -> Option<String> {
        let mut out = empty();
        let mut port = 0u32;
        // SAFETY: as above.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_network_filter_get_remote_address(
                self.0, &mut out, &mut port,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: as above.
        let ip = String::from_utf8(unsafe { copied(&out) }?).ok()?;
        Some(if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        })
    }

    fn server_name(&mut self) -> Option<String> {
        let mut out = empty();
        // SAFETY: as above.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_network_filter_get_requested_server_name(
                self.0, &mut out,
            )
        };
        if !found {
            return None;
        }
        // SAFETY: as above.
        String::from_utf8(unsafe { copied(&out) }?).ok()
    }

    fn set_filter_state(&mut self, key: &str, value: &str) -> bool {
        // SAFETY: as above; Envoy copies both buffers.
        unsafe {
            abi::envoy_dynamic_module_callback_network_set_filter_state_bytes(
                self.0,
                module_buffer(key),
                module_buffer(value),
            )
        }
    }

    fn increment(&mut self, id: usize, n: u64) -> bool {
        // SAFETY: as above.
        let status = unsafe {
            abi::envoy_dynamic_module_callback_network_filter_increment_counter(self.0, id, n)
        };
        if status != 0 {
            debug!("increment_counter({id}, {n}) failed: {status}");
        }
        status == 0
    }

    fn close(&mut self) {
        // SAFETY: as above.
        unsafe {
            abi::envoy_dynamic_module_callback_network_filter_close(self.0, CloseType::FlushWrite)
        }
    }
}

// ---- Event hooks (exported; Envoy finds them by name) ------------------------------------------
// Envoy calls them with the pointers the hooks gave it (or null): the pointer arguments are the
// ABI's contract, not the module's callers', so the hooks are safe functions that check for null.

/// A configuration: compiled, or null (Envoy then rejects it) on an error or a panic.
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_new(
    config_envoy: abi::ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> abi::ConfigModulePtr {
    let made = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy's buffer is valid for the duration of this hook.
        let bytes = unsafe { copied(&config) }.unwrap_or_default();
        let define = |name: &str| {
            let mut id = 0usize;
            // SAFETY: config_envoy is this hook's configuration; `id` outlives the call.
            let status = unsafe {
                abi::envoy_dynamic_module_callback_network_filter_config_define_counter(
                    config_envoy,
                    module_buffer(name),
                    &mut id,
                )
            };
            (status == 0).then_some(id)
        };
        match NetworkConfig::new(&bytes, define) {
            Ok(config) => Arc::into_raw(Arc::new(config)).cast(),
            Err(ConfigRefused(message)) => {
                error!("{message}");
                std::ptr::null()
            }
        }
    }));
    made.unwrap_or_else(|_| {
        error!("invalid configuration: the module failed while compiling it");
        std::ptr::null()
    })
}

/// The configuration is gone (main thread); connections still open keep their own reference.
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_destroy(
    config: abi::ConfigModulePtr,
) {
    let _ = catch_unwind(|| {
        if !config.is_null() {
            // SAFETY: made by Arc::into_raw in config_new, released once here.
            drop(unsafe { Arc::from_raw(config.cast::<NetworkConfig>()) });
        }
    });
}

/// A new connection's filter (worker).
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_new(
    config: abi::ConfigModulePtr,
    _filter: abi::FilterEnvoyPtr,
) -> abi::FilterModulePtr {
    catch_unwind(|| {
        if config.is_null() {
            return std::ptr::null();
        }
        let config = config.cast::<NetworkConfig>();
        // SAFETY: the configuration outlives this hook; one more strong reference for the
        // connection, released in filter_destroy.
        let config = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        Box::into_raw(Box::new(Connection {
            config,
            refused: false,
        }))
        .cast_const()
        .cast()
    })
    .unwrap_or(std::ptr::null())
}

/// # Safety
/// `filter` is null or a pointer made by `on_network_filter_new`, not yet destroyed.
unsafe fn connection<'a>(filter: abi::FilterModulePtr) -> Option<&'a mut Connection> {
    filter.cast::<Connection>().cast_mut().as_mut()
}

/// The connection opened: decide (fail closed: a panic closes it).
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_new_connection(
    filter_envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
) -> DataStatus {
    let decided = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy passes the filter it made, on its worker.
        let Some(conn) = (unsafe { connection(filter) }) else {
            error!("client-ip-filter: not configured; closing the connection");
            Envoy(filter_envoy).close();
            return DataStatus::StopIteration;
        };
        conn.refused = conn.config.decide(&mut Envoy(filter_envoy));
        if conn.refused {
            DataStatus::StopIteration
        } else {
            DataStatus::Continue
        }
    }));
    decided.unwrap_or_else(|_| {
        // SAFETY: as above.
        if let Some(conn) = unsafe { connection(filter) } {
            conn.refused = true;
        }
        error!("client-ip-filter: failed while deciding a connection; closing it");
        Envoy(filter_envoy).close();
        DataStatus::StopIteration
    })
}

/// Data from the client: held when the connection was refused (even if the close is late).
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_read(
    _filter_envoy: abi::FilterEnvoyPtr,
    filter: abi::FilterModulePtr,
    _data_length: usize,
    _end_stream: bool,
) -> DataStatus {
    catch_unwind(|| {
        // SAFETY: as above.
        match unsafe { connection(filter) } {
            Some(conn) if !conn.refused => DataStatus::Continue,
            _ => DataStatus::StopIteration,
        }
    })
    .unwrap_or(DataStatus::StopIteration)
}

/// Data to the client: never touched.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_write(
    _filter_envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _data_length: usize,
    _end_stream: bool,
) -> DataStatus {
    DataStatus::Continue
}

/// A connection event (closed, connected): nothing to do.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_event(
    _filter_envoy: abi::FilterEnvoyPtr,
    _filter: abi::FilterModulePtr,
    _event: u32,
) {
}

/// The connection's filter is gone.
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_network_filter_destroy(filter: abi::FilterModulePtr) {
    let _ = catch_unwind(|| {
        if !filter.is_null() {
            // SAFETY: made by Box::into_raw in filter_new, destroyed once here.
            drop(unsafe { Box::from_raw(filter.cast::<Connection>().cast_mut()) });
        }
    });
}

/// Hooks the filter does not use, exported so that Envoy finds every network hook it looks up.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_http_callout_done() {}
/// See [`envoy_dynamic_module_on_network_filter_http_callout_done`].
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_scheduled() {}
/// See [`envoy_dynamic_module_on_network_filter_http_callout_done`].
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_config_scheduled() {}
/// See [`envoy_dynamic_module_on_network_filter_http_callout_done`].
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_above_write_buffer_high_watermark() {}
/// See [`envoy_dynamic_module_on_network_filter_http_callout_done`].
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_network_filter_below_write_buffer_low_watermark() {}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
