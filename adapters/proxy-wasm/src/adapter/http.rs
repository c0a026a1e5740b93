//! The HTTP stream context: reads the downstream address and the headers this request's decision
//! needs, asks the core for a [`Decision`] and applies it (a local refusal, or the header plan).
//!
//! Per request the default configuration makes four host calls: one property read (the
//! downstream address), one read of the request's header lines (to find the headers of
//! `forward.strip` and other spellings of the filter's own, in any case and with `_` for `-`;
//! the same read serves the forwarding header, `:authority` and `:path`), one filter-state
//! write (`wasm.client_ip`) and one header write (`x-real-ip`); a header to remove is one more
//! call, only when the request has it. Counters are counted in the VM and flushed from the
//! root's tick; `wasm.client_ip_decision` is written only for a refusal (an allowed request
//! leaves it absent, as the contract allows), `wasm.client_ip_rule` only when a rule decided.
//! A configuration that writes and strips no header reads a header only when this request's
//! decision can depend on it: X-Forwarded-For only from a trusted downstream address, `:path`
//! only when a path rule can apply.
//!
//! A header edit the host refuses refuses the request (500, [`Refusal::EDIT_FAILED`]), counted
//! in `client_ip.header_edit_failed` and warned about from the tick at most once a minute: a
//! request is never forwarded with a client-IP header the filter could not sanitise.

#[cfg(target_arch = "wasm32")]
use std::rc::Rc;

use log::debug;
#[cfg(target_arch = "wasm32")]
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::compiled::Compiled;
use super::{local_reply, property, record_facts, reply_headers, set_filter_state, write_fact};
use crate::host::{self, HostError, PropertyPath, StreamHost};
use client_ip_core::access::Verdict;
use client_ip_core::addr::AddrText;
use client_ip_core::facts::{apply_key, describe, Fact, FactSink};
use client_ip_core::forward::HeaderMap;
use client_ip_core::identity::Link;
use client_ip_core::policy::{Decision, Downstream, HeaderSource, Refusal, Request};

/// The versions of the source lists that decided the request (docs/sources.md).
const CLIENT_IP_LISTS: PropertyPath = PropertyPath::fixed(b"client_ip_lists");
/// Read when the `set_filter_state` value is missing.
const SOURCE_ADDRESS: PropertyPath = PropertyPath::fixed(b"source\0address");

/// One HTTP stream, holding the configuration current when it started.
#[cfg(target_arch = "wasm32")]
pub(super) struct Stream {
    compiled: Option<Rc<Compiled>>,
}

#[cfg(target_arch = "wasm32")]
impl Stream {
    pub(super) fn new(compiled: Option<Rc<Compiled>>) -> Self {
        Stream { compiled }
    }
}

#[cfg(target_arch = "wasm32")]
impl Context for Stream {}

#[cfg(target_arch = "wasm32")]
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        request_headers(&mut host::Abi, self.compiled.as_deref())
    }
}

/// One request's headers arrived: decide and apply the decision, through `host`.
pub(super) fn request_headers(host: &mut impl StreamHost, compiled: Option<&Compiled>) -> Action {
    // Envoy creates streams only for an accepted configuration; fail closed if not.
    let Some(compiled) = compiled else {
        return local_reply(
            host,
            500,
            "client-ip-filter: not configured\n",
            &reply_headers(),
            "",
        );
    };
    let policy = &compiled.policy;
    let filter_state = property(host, &compiled.downstream_path);
    let downstream = Downstream::read(filter_state.as_deref(), || property(host, &SOURCE_ADDRESS));
    let fetched = policy.fetch_headers(&compiled.reads, &downstream, &mut HostHeaders(host));
    let headers = match fetched {
        Ok(headers) => headers,
        Err(status) => {
            debug!("cannot read request headers: {status:?}");
            let body = "client-ip-filter: cannot read request headers\n";
            return local_reply(host, 500, body, &compiled.reply_headers, "");
        }
    };
    let request = Request {
        downstream,
        headers: &headers,
    };
    let link = compiled
        .link
        .as_ref()
        .map_or_else(Link::default, |l| l.read(host));
    let decision = policy.decide_with_link(&request, link);
    if let Some(lists) = &compiled.lists {
        set_filter_state(host, &CLIENT_IP_LISTS, lists);
    }
    compiled.metrics.count(&decision);
    let link_text = decision.link.identity.map(|id| id.text());
    if let Some(reader) = &compiled.link {
        reader.record(host, link_text.as_deref());
    }
    if decision.verdict == Verdict::Deny {
        let client = decision.client.map(|c| c.text());
        record(
            host,
            compiled,
            &decision,
            client.as_ref().map(AddrText::as_str),
        );
        // The core chooses the reply: 503 for an unavailable source, else the deny status.
        return refuse(host, compiled, policy.refusal(&decision));
    }
    // The plan formats the client's text once, for the headers and the filter state.
    let plan = policy.header_plan(&request, &decision);
    record(host, compiled, &decision, plan.client_text());
    if let Err(failed) = plan.apply(&mut HostEdits(host)) {
        // Fail closed: the request may still carry a header the client wrote.
        compiled.metrics.count_edit_failure(|| failed.detail);
        return refuse(host, compiled, Refusal::EDIT_FAILED);
    }
    if let Some(reader) = &compiled.link {
        reader.forward(host, link_text.as_deref());
    }
    if let Some(keying) = policy.rate_limit_key(&decision) {
        compiled.metrics.count_key(&keying);
        let header = policy.rate_limit.as_ref().and_then(|r| r.header.as_deref());
        if let Err(failed) = apply_key(&keying, header, &mut HostEdits(host)) {
            debug!("cannot edit request header: {}", failed.detail);
        }
    }
    Action::Continue
}

/// Answers a refused request locally.
fn refuse(host: &mut impl StreamHost, compiled: &Compiled, refusal: Refusal<'_>) -> Action {
    local_reply(
        host,
        refusal.status,
        refusal.body,
        &compiled.reply_headers,
        refusal.details,
    )
}

/// The request headers, read from Envoy: one value per `get_map_value`, or every line with one
/// `get_map`. Invalid UTF-8 in a value becomes U+FFFD (see [`host::text`]).
struct HostHeaders<'h, H>(&'h mut H);

impl<H: StreamHost> HeaderSource for HostHeaders<'_, H> {
    type Error = HostError;

    fn value(&mut self, name: &str) -> Result<Option<String>, HostError> {
        Ok(self.0.request_header(name)?.map(host::text))
    }

    fn lines(&mut self) -> Result<Vec<(String, String)>, HostError> {
        self.0.request_header_lines()
    }
}

/// The request in Envoy, as the core edits it: its headers (the header plan, the rate-limit key,
/// the link header) and its filter state (the facts).
pub(super) struct HostEdits<'h, H>(pub(super) &'h mut H);

impl<H: StreamHost> HeaderMap for HostEdits<'_, H> {
    type Error = HostError;

    fn set(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.0.set_request_header(name, value)
    }

    fn remove(&mut self, name: &str) -> Result<(), HostError> {
        self.0.remove_request_header(name)
    }
}

impl<H: StreamHost> FactSink for HostEdits<'_, H> {
    fn write_fact(&mut self, fact: Fact, value: &str) {
        write_fact(self.0, fact, value);
    }
}

/// Filter state for access logs (the core's facts of the decision), and the debug line of the
/// decision. `client` is the decision's client as address text.
fn record(
    host: &mut impl StreamHost,
    compiled: &Compiled,
    decision: &Decision,
    client: Option<&str>,
) {
    record_facts(host, &compiled.policy, decision, client);
    debug!("{}", describe(&compiled.policy, decision, client));
}
