//! The proxy-wasm adapter. The root context compiles the configuration once into an immutable
//! [`Policy`] shared by every stream; a stream reads the downstream address and the headers the
//! policy needs, asks the core for a decision and applies it. Every host call goes through
//! [`crate::host`], which returns the host's status instead of panicking: the filter never traps
//! on a host status.
//!
//! Per request the default configuration makes five host calls: one property read (the
//! downstream address), one counter increment, two filter-state writes and one header write.
//! A request header is read only when this request's decision can depend on it: X-Forwarded-For
//! only from a trusted downstream address, `:path` only when a path rule can apply.

use std::rc::Rc;

use log::{debug, error, info, warn, LevelFilter};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::access::Verdict;
use crate::addr::AddrText;
use crate::config;
use crate::forward::HeaderOp;
use crate::host::{self, HostError, PropertyPath};
use crate::policy::{Decision, Downstream, HeaderReads, HeaderSource, Origin, Policy, Request};

proxy_wasm::main! {{
    // The SDK's logger unwraps the status of every log call; this one ignores it.
    if log::set_logger(&HostLogger).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// `log` records to Envoy's log (`proxy_log`), for the levels Envoy logs the wasm component at.
struct HostLogger;

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

/// The root context's tick, in milliseconds: how often it re-reads Envoy's log level.
const TICK_MS: u32 = 1000;

/// The filter state written for access logs (Envoy shows it as `wasm.client_ip`, …).
const CLIENT_IP: PropertyPath = PropertyPath::fixed(b"client_ip");
const CLIENT_IP_DECISION: PropertyPath = PropertyPath::fixed(b"client_ip_decision");
const CLIENT_IP_RULE: PropertyPath = PropertyPath::fixed(b"client_ip_rule");
/// Read when the `set_filter_state` value is missing.
const SOURCE_ADDRESS: PropertyPath = PropertyPath::fixed(b"source\0address");

/// The local reply's `%RESPONSE_CODE_DETAILS%` when access control refuses a request.
const DENIED_DETAILS: &str = "client_ip_filter_denied";

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
    fn define(policy: &Policy) -> Result<Metrics, (String, HostError)> {
        let counter = |name: String| host::define_counter(&name).map_err(|status| (name, status));
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

    /// Counts a decision. Each count is one `increment_metric` call, made as the request is
    /// decided, so `/stats` is exact at any moment (batching them would save about a
    /// microsecond per request: see BENCHMARKS.md).
    fn count(&self, decision: &Decision) {
        let slot = match decision.verdict {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
            Verdict::DryRunDeny => 2,
        };
        increment([self.allowed, self.denied, self.dry_run_denied][slot]);
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
    if let Err(status) = host::increment_metric(metric, 1) {
        debug!("increment_metric({metric}) failed: {status:?}");
    }
}

/// A configuration compiled once, shared by every stream that starts while it is current: the
/// policy, and everything a request needs from the host side prepared ahead of it.
struct Compiled {
    policy: Policy,
    /// The request headers the policy reads: the only ones fetched from Envoy.
    reads: HeaderReads,
    metrics: Metrics,
    /// `["filter_state", <downstream_filter_state>]`.
    downstream_path: PropertyPath,
    /// The local reply's headers, serialized.
    reply_headers: Vec<u8>,
}

#[derive(Default)]
struct Root {
    compiled: Option<Rc<Compiled>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        refresh_log_level();
        let bytes = match host::plugin_configuration(size) {
            Ok(bytes) => bytes,
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
        let reads = policy.header_reads();
        debug!("request headers read: {reads:?}");
        self.compiled = Some(Rc::new(Compiled {
            downstream_path: PropertyPath::new(&["filter_state", &policy.downstream_filter_state]),
            reply_headers: reply_headers(),
            policy,
            reads,
            metrics,
        }));
        if let Err(status) = host::set_tick_period(TICK_MS) {
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
        let Some(compiled) = self.compiled.as_deref() else {
            return local_reply(
                500,
                "client-ip-filter: not configured\n",
                &reply_headers(),
                "",
            );
        };
        let policy = &compiled.policy;
        let filter_state = property(&compiled.downstream_path);
        let downstream = Downstream::read(filter_state.as_deref(), || property(&SOURCE_ADDRESS));
        let headers = match policy.fetch_headers(&compiled.reads, &downstream, &mut HostHeaders) {
            Ok(headers) => headers,
            Err(status) => {
                debug!("cannot read request headers: {status:?}");
                let body = "client-ip-filter: cannot read request headers\n";
                return local_reply(500, body, &compiled.reply_headers, "");
            }
        };
        let request = Request {
            downstream,
            headers: &headers,
        };
        let decision = policy.decide(&request);
        compiled.metrics.count(&decision);

        if decision.verdict == Verdict::Deny {
            let client = decision.client.map(|c| c.text());
            record(compiled, &decision, client.as_ref().map(AddrText::as_str));
            let access = &policy.access;
            return local_reply(
                access.deny_status,
                &access.deny_body,
                &compiled.reply_headers,
                DENIED_DETAILS,
            );
        }
        // The plan formats the client's text once, for the headers and the filter state.
        let plan = policy.header_plan(&request, &decision);
        record(compiled, &decision, plan.client_text());
        plan.for_each(|op| {
            let (name, result) = match op {
                HeaderOp::Set(name, value) => (name, host::set_request_header(name, value)),
                HeaderOp::Remove(name) => (name, host::remove_request_header(name)),
            };
            if let Err(status) = result {
                debug!("cannot edit request header {name}: {status:?}");
            }
        });
        Action::Continue
    }
}

/// The request headers, read from Envoy: one value per `get_map_value`, or every line with one
/// `get_map`. Invalid UTF-8 in a value becomes U+FFFD (see [`host::text`]).
struct HostHeaders;

impl HeaderSource for HostHeaders {
    type Error = HostError;

    fn value(&mut self, name: &str) -> Result<Option<String>, HostError> {
        Ok(host::request_header(name)?.map(host::text))
    }

    fn lines(&mut self) -> Result<Vec<(String, String)>, HostError> {
        host::request_header_lines()
    }
}

/// A property's bytes; None when absent or when the host refuses.
fn property(path: &PropertyPath) -> Option<Vec<u8>> {
    match host::property(path) {
        Ok(value) => value,
        Err(status) => {
            debug!("cannot read property {path:?}: {status:?}");
            None
        }
    }
}

fn set_filter_state(path: &PropertyPath, value: &str) {
    if let Err(status) = host::set_property(path, value.as_bytes()) {
        debug!("cannot set filter state {path:?}: {status:?}");
    }
}

/// Filter state for access logs, and the debug line of the decision.
/// `client` is the decision's client as address text.
fn record(compiled: &Compiled, decision: &Decision, client: Option<&str>) {
    let rule = compiled.policy.rule_name(decision);
    if let Some(text) = client {
        set_filter_state(&CLIENT_IP, text);
    }
    set_filter_state(&CLIENT_IP_DECISION, decision.verdict.as_str());
    if let Some(name) = rule {
        set_filter_state(&CLIENT_IP_RULE, name);
    }
    debug!(
        "decision={} client={} downstream={} ({:?}) rule={} invalid_entry={}",
        decision.verdict.as_str(),
        client.unwrap_or("unknown"),
        decision
            .downstream
            .addr
            .map_or_else(|| "unknown".to_string(), |d| d.to_string()),
        decision.downstream.origin,
        rule.unwrap_or("-"),
        decision.invalid
    );
}

fn reply_headers() -> Vec<u8> {
    host::serialize_pairs(&[("content-type", "text/plain")])
}

fn local_reply(status: u32, body: &str, headers: &[u8], details: &str) -> Action {
    if let Err(e) = host::send_local_response(status, body.as_bytes(), headers, details) {
        debug!("cannot send local reply: {e:?}");
    }
    Action::Pause
}
