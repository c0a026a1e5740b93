//! The proxy-wasm adapter. The root context compiles the configuration once into an immutable
//! [`Policy`] shared by every stream; a stream reads the downstream address and the request
//! headers, asks the core for a decision and applies it. Host calls go through the fallible
//! `proxy_wasm::hostcalls` functions: the filter never panics on a host status.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, error, info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};

use crate::access::Verdict;
use crate::addr::AddrText;
use crate::config;
use crate::forward::HeaderOp;
use crate::policy::{Decision, Downstream, Origin, Policy, Request};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// How often the root context re-reads Envoy's log level for the wasm component, so that
/// `debug!` costs nothing (no host call) while Envoy logs at info.
const LOG_LEVEL_REFRESH: Duration = Duration::from_secs(1);

/// Counter ids of one configuration.
struct Metrics {
    allowed: u32,
    denied: u32,
    dry_run_denied: u32,
    invalid: u32,
    downstream_from_xff: u32,
    /// Per rule, in rule order: allowed, denied, dry_run_denied.
    rules: Vec<[u32; 3]>,
}

impl Metrics {
    fn define(policy: &Policy) -> Result<Metrics, (String, Status)> {
        let counter = |name: String| {
            hostcalls::define_metric(MetricType::Counter, &name).map_err(|status| (name, status))
        };
        let mut rules = Vec::with_capacity(policy.access.rules.len());
        for rule in &policy.access.rules {
            let base = format!("client_ip.rule.{}", rule.name);
            rules.push([
                counter(format!("{base}.allowed"))?,
                counter(format!("{base}.denied"))?,
                counter(format!("{base}.dry_run_denied"))?,
            ]);
        }
        Ok(Metrics {
            allowed: counter("client_ip.allowed".into())?,
            denied: counter("client_ip.denied".into())?,
            dry_run_denied: counter("client_ip.dry_run_denied".into())?,
            invalid: counter("client_ip.invalid".into())?,
            downstream_from_xff: counter("client_ip.downstream_from_xff".into())?,
            rules,
        })
    }

    fn count(&self, decision: &Decision) {
        let slot = match decision.verdict {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
            Verdict::DryRunDeny => 2,
        };
        let total = [self.allowed, self.denied, self.dry_run_denied][slot];
        increment(total);
        if let Some(rule) = decision.rule.and_then(|i| self.rules.get(i)) {
            increment(rule[slot]);
        }
        if decision.invalid {
            increment(self.invalid);
        }
        if decision.downstream.origin == Origin::SourceAddressFromXff {
            increment(self.downstream_from_xff);
        }
    }
}

fn increment(metric: u32) {
    if let Err(status) = hostcalls::increment_metric(metric, 1) {
        debug!("increment_metric({metric}) failed: {status:?}");
    }
}

/// A configuration compiled once, shared by every stream that starts while it is current.
struct Compiled {
    policy: Policy,
    metrics: Metrics,
}

#[derive(Default)]
struct Root {
    compiled: Option<Rc<Compiled>>,
}

fn refresh_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        refresh_log_level();
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(status) => {
                error!("invalid configuration: configuration: cannot be read ({status:?})");
                return false;
            }
        };
        let (policy, warnings) = match config::parse(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                error!("invalid configuration: {e}");
                return false;
            }
        };
        for warning in &warnings {
            warn!("configuration: {warning}");
        }
        let metrics = match Metrics::define(&policy) {
            Ok(metrics) => metrics,
            Err((name, status)) => {
                error!("cannot define counter {name}: {status:?}");
                return false;
            }
        };
        info!(
            "configured: {} rule(s), forwarding {:?}",
            policy.access.rules.len(),
            policy.forwarding.headers
        );
        self.compiled = Some(Rc::new(Compiled { policy, metrics }));
        if let Err(status) = hostcalls::set_tick_period(LOG_LEVEL_REFRESH) {
            debug!("set_tick_period failed: {status:?}");
        }
        true
    }

    fn on_tick(&mut self) {
        refresh_log_level();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            compiled: self.compiled.clone(),
        }))
    }
}

struct Stream {
    compiled: Option<Rc<Compiled>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Envoy creates streams only for an accepted configuration; fail closed if not.
        let Some(compiled) = self.compiled.clone() else {
            return local_reply(500, "client-ip-filter: not configured\n");
        };
        let headers = match hostcalls::get_map_bytes(MapType::HttpRequestHeaders) {
            Ok(headers) => text_headers(headers),
            Err(status) => {
                debug!("cannot read request headers: {status:?}");
                return local_reply(500, "client-ip-filter: cannot read request headers\n");
            }
        };
        let policy = &compiled.policy;
        let filter_state = property(&["filter_state", &policy.downstream_filter_state]);
        let request = Request {
            downstream: Downstream::read(filter_state.as_deref(), || {
                property(&["source", "address"])
            }),
            headers: &headers,
        };
        let decision = policy.decide(&request);
        compiled.metrics.count(&decision);
        record(policy, &decision);

        if decision.verdict == Verdict::Deny {
            return local_reply(policy.access.deny_status, &policy.access.deny_body);
        }
        policy.header_plan(&request, &decision).for_each(|op| {
            let (name, value) = match op {
                HeaderOp::Set(name, value) => (name, Some(value)),
                HeaderOp::Remove(name) => (name, None),
            };
            if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value)
            {
                debug!("cannot edit request header {name}: {status:?}");
            }
        });
        Action::Continue
    }
}

/// The request header lines as text. HTTP/1 allows obs-text (bytes 0x80-0xFF) in a header value
/// and Envoy passes it through: `hostcalls::get_map` unwraps `String::from_utf8` and would panic on
/// it, crashing the VM so that every later request on the worker fails. Values are read as bytes
/// and converted lossily instead; an entry holding U+FFFD is simply not an address.
fn text_headers(lines: Vec<(String, Vec<u8>)>) -> Vec<(String, String)> {
    lines
        .into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

/// A property's bytes; None when absent or when the host refuses.
fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

fn set_filter_state(name: &str, value: Option<&str>) {
    if let Err(status) = hostcalls::set_property(vec![name], value.map(str::as_bytes)) {
        debug!("cannot set filter state {name}: {status:?}");
    }
}

/// Filter state for access logs, and the debug line of the decision.
fn record(policy: &Policy, decision: &Decision) {
    let client = decision.client.map(|c| c.text());
    let rule = policy.rule_name(decision);
    if let Some(text) = &client {
        set_filter_state("client_ip", Some(text.as_str()));
    }
    set_filter_state("client_ip_decision", Some(decision.verdict.as_str()));
    if rule.is_some() {
        set_filter_state("client_ip_rule", rule);
    }
    debug!(
        "decision={} client={} downstream={} ({:?}) rule={} invalid_entry={}",
        decision.verdict.as_str(),
        client.as_ref().map_or("unknown", AddrText::as_str),
        decision
            .downstream
            .addr
            .map_or_else(|| "unknown".to_string(), |d| d.to_string()),
        decision.downstream.origin,
        rule.unwrap_or("-"),
        decision.invalid
    );
}

fn local_reply(status: u32, body: &str) -> Action {
    let headers = vec![("content-type", "text/plain")];
    if let Err(e) = hostcalls::send_http_response(status, headers, Some(body.as_bytes())) {
        debug!("cannot send local reply: {e:?}");
    }
    Action::Pause
}
