//! The proxy-wasm adapter: thin contexts that read what the host has, ask the pure core for a
//! decision and apply it. Every host call goes through [`crate::host`], which returns the host's
//! status instead of panicking: the filter never traps on a host status.
//!
//! The contexts are built for wasm32 only. What a request or a connection does with the host is
//! generic over [`StreamHost`] (the host calls it makes): Envoy's in the `.wasm`, and natively
//! (`cargo test`) a fake that fails the calls a test chooses, so the paths Envoy cannot be made
//! to take (a header read refused, a local reply that fails) are tested too (`tests` below).
//!
//! - [`root`]: the root context; compiles the configuration once, follows sources, ticks.
//! - [`compiled`]: a configuration compiled once ([`compiled::Compiled`]), shared by the contexts.
//! - [`http`]: the HTTP stream context; one decision per request.
//! - [`metrics`]: the counters of one configuration.
//! - [`identity`]: the connection's private-link identity (only for configurations using one).
//! - [`network`]: the network-filter connection context (docs/network-mode.md) and the refusing context of a
//!   `filter_type` mismatch.
//! - [`sources`]: lists from list servers: the lease, fetching, publishing and adopting.

mod compiled;
mod http;
mod identity;
mod metrics;
mod network;
#[cfg(target_arch = "wasm32")]
mod root;
#[cfg(any(target_arch = "wasm32", test))]
mod sources;
#[cfg(test)]
mod sources_tests;
#[cfg(test)]
mod tests;

use log::debug;
#[cfg(target_arch = "wasm32")]
use log::LevelFilter;
#[cfg(target_arch = "wasm32")]
use proxy_wasm::traits::RootContext;
use proxy_wasm::types::Action;

use crate::host::{self, PropertyPath, StreamHost};
use client_ip_core::facts::{each_fact, Fact};
use client_ip_core::policy::{Decision, Policy};

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    // The SDK's logger unwraps the status of every log call; this one ignores it.
    if log::set_logger(&HostLogger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}

/// `log` records to Envoy's log (`proxy_log`), for the levels Envoy logs the wasm component at.
#[cfg(target_arch = "wasm32")]
struct HostLogger;

#[cfg(target_arch = "wasm32")]
impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        let _ = host::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Follows Envoy's log level for the wasm component, so that `debug!` costs nothing (not even
/// the formatting) while Envoy logs at info.
#[cfg(target_arch = "wasm32")]
fn refresh_log_level() {
    let filter = match host::log_level() {
        Ok(0) => LevelFilter::Trace,
        Ok(1) => LevelFilter::Debug,
        Ok(2) => LevelFilter::Info,
        Ok(3) => LevelFilter::Warn,
        Ok(4) => LevelFilter::Error,
        Ok(5) => LevelFilter::Off, // critical: the filter logs nothing at that level
        _ => return,
    };
    log::set_max_level(filter);
}

/// A property's bytes; None when absent or when the host refuses.
fn property(host: &mut impl StreamHost, path: &PropertyPath) -> Option<Vec<u8>> {
    match host.property(path) {
        Ok(value) => value,
        Err(status) => {
            debug!("cannot read property {path:?}: {status:?}");
            None
        }
    }
}

/// Writes the filter state `path` (a failure is logged at debug, never fatal).
fn set_filter_state(host: &mut impl StreamHost, path: &PropertyPath, value: &str) {
    if let Err(status) = host.set_property(path, value.as_bytes()) {
        debug!("cannot set filter state {path:?}: {status:?}");
    }
}

/// The filter state path of `fact` (Envoy shows it as `wasm.<key>`), known at compile time.
const fn fact_path(fact: Fact) -> PropertyPath {
    PropertyPath::fixed(match fact {
        Fact::ClientIp => b"client_ip",
        Fact::Decision => b"client_ip_decision",
        Fact::Rule => b"client_ip_rule",
        Fact::Country => b"client_country",
        Fact::Asn => b"client_asn",
        Fact::Key => b"client_ip_key",
    })
}

/// Writes the filter state of `fact` (a failure is logged at debug, never fatal).
fn write_fact(host: &mut impl StreamHost, fact: Fact, value: &str) {
    set_filter_state(host, &fact_path(fact), value);
}

/// Every fact of a decision ([`client_ip_core::facts::each_fact`]), in the core's order.
fn record_facts(
    host: &mut impl StreamHost,
    policy: &Policy,
    decision: &Decision,
    client: Option<&str>,
) {
    each_fact(policy, decision, client, |fact, value| {
        write_fact(host, fact, value)
    });
}

/// The local reply's headers, serialized.
fn reply_headers() -> Vec<u8> {
    host::serialize_pairs(&[("content-type", "text/plain")])
}

/// Answers the request locally and stops it.
/// A reply that fails still stops the request (Pause): a refused request never goes on upstream.
fn local_reply(
    host: &mut impl StreamHost,
    status: u32,
    body: &str,
    headers: &[u8],
    details: &str,
) -> Action {
    if let Err(e) = host.send_local_response(status, body.as_bytes(), headers, details) {
        debug!("cannot send local reply: {e:?}");
    }
    Action::Pause
}
