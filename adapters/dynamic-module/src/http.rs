//! One HTTP request: reads the downstream address and the headers this request's decision needs,
//! asks the core for a [`Decision`] and applies it (a local refusal, or the header plan), through
//! [`StreamHost`]. The same core calls, in the same order, as the `.wasm`'s HTTP context.
//!
//! The filter state is written under the names the `.wasm` gets from Envoy (`wasm.client_ip`,
//! `wasm.client_ip_decision`, ...), so that access logs read `%FILTER_STATE(wasm.client_ip:PLAIN)%`
//! with either build. Counters are Envoy's, incremented per decision (no batching: a native call).
//!
//! A header edit Envoy refuses refuses the request (500, [`Refusal::EDIT_FAILED`]): a request is
//! never forwarded with a client-IP header the filter could not sanitise.

use std::cell::Cell;

use log::debug;

use client_ip_core::access::Verdict;
use client_ip_core::addr::AddrText;
use client_ip_core::facts::{apply_key, describe, each_fact, Fact, FactSink};
use client_ip_core::forward::HeaderMap;
use client_ip_core::identity::Link;
use client_ip_core::policy::{Decision, Downstream, HeaderSource, Policy, Refusal, Request};
use client_ip_core::tally::{Slot, Slots};

use crate::config::Compiled;
use crate::host::{HostError, StreamHost};

/// The versions of the source lists that decided the request (docs/sources.md).
const CLIENT_IP_LISTS: &str = "wasm.client_ip_lists";

/// What the filter chain does after the request headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// The request goes on upstream.
    Continue,
    /// The request was answered locally (or must not go on): stop the chain.
    Stop,
}

/// The reply when there is no configuration to decide with (never expected: fail closed).
pub const NOT_CONFIGURED: Refusal<'static> = Refusal {
    status: 500,
    body: "client-ip-filter: not configured\n",
    details: "client_ip_filter_not_configured",
};

/// The reply when the filter panicked while deciding (the panic was caught): fail closed.
pub const PANICKED: Refusal<'static> = Refusal {
    status: 500,
    body: "client-ip-filter: internal error\n",
    details: "client_ip_filter_internal_error",
};

thread_local! {
    /// The header lines of the worker's last request, kept for the next one to read its lines
    /// into (their strings' buffers reused: [`crate::host::refill`]). A worker runs one hook at a
    /// time, so the lines are taken out for the request and put back after it.
    static LINES: Cell<Vec<(String, String)>> = const { Cell::new(Vec::new()) };
}

/// A header line longer than this is not kept for the next request (its buffer is freed).
const KEPT_LINE_BYTES: usize = 4096;

/// One request's headers arrived: decide and apply the decision, through `host`.
pub fn request_headers(host: &mut impl StreamHost, compiled: &Compiled) -> Next {
    let mut source = HostHeaders {
        host,
        spare: LINES.take(),
    };
    let policy = &compiled.policy;
    let filter_state = source.host.filter_state(&policy.downstream_filter_state);
    let downstream = Downstream::read(filter_state.as_deref(), || source.host.source_address());
    let fetched = policy.fetch_headers(&compiled.reads, &downstream, &mut source);
    let HostHeaders { host, spare } = source;
    let next = match fetched {
        Ok(headers) => {
            let next = decide(host, compiled, downstream, &headers);
            keep(headers);
            next
        }
        Err(status) => {
            debug!("cannot read request headers: {status:?}");
            let body = "client-ip-filter: cannot read request headers\n";
            host.send_local_response(500, body, "");
            Next::Stop
        }
    };
    keep(spare);
    next
}

/// Keeps `lines` for the worker's next request, unless the lines kept already have more room.
fn keep(mut lines: Vec<(String, String)>) {
    if lines.capacity() == 0 {
        return;
    }
    if lines
        .iter()
        .any(|(n, v)| n.capacity() > KEPT_LINE_BYTES || v.capacity() > KEPT_LINE_BYTES)
    {
        lines = Vec::new();
    }
    LINES.with(|kept| {
        let old = kept.take();
        kept.set(if old.capacity() > lines.capacity() {
            old
        } else {
            lines
        });
    });
}

/// The decision for a request whose `headers` were read, applied through `host`.
fn decide(
    host: &mut impl StreamHost,
    compiled: &Compiled,
    downstream: Downstream,
    headers: &[(String, String)],
) -> Next {
    let policy = &compiled.policy;
    let request = Request {
        downstream,
        headers,
    };
    let link = compiled
        .link
        .as_ref()
        .map_or_else(Link::default, |l| l.read(host));
    let decision = policy.decide_with_link(&request, link);
    if let Some(lists) = &compiled.lists {
        set_filter_state(host, CLIENT_IP_LISTS, lists);
    }
    compiled
        .slots
        .each(&decision, |slot| count(host, compiled, slot));
    compiled.alarm_decision(&decision);
    let link_text = decision.link.identity.map(|id| id.text());
    if let Some(reader) = &compiled.link {
        reader.record(host, link_text.as_deref());
    }
    if decision.verdict == Verdict::Deny {
        let client = decision.client.map(|c| c.text());
        record(
            host,
            policy,
            &decision,
            client.as_ref().map(AddrText::as_str),
        );
        return refuse(host, policy.refusal(&decision));
    }
    let plan = policy.header_plan(&request, &decision);
    record(host, policy, &decision, plan.client_text());
    if let Err(failed) = plan.apply(&mut HostEdits(host)) {
        // Fail closed: the request may still carry a header the client wrote.
        count(host, compiled, Slots::HEADER_EDIT_FAILED);
        compiled.alarm_edit_failure(|| failed.detail);
        return refuse(host, Refusal::EDIT_FAILED);
    }
    if let Some(reader) = &compiled.link {
        reader.forward(host, link_text.as_deref());
    }
    if let Some(keying) = policy.rate_limit_key(&decision) {
        if let Some(slot) = compiled.slots.key(&keying) {
            count(host, compiled, slot);
        }
        let header = policy.rate_limit.as_ref().and_then(|r| r.header.as_deref());
        if let Err(failed) = apply_key(&keying, header, &mut HostEdits(host)) {
            debug!("cannot edit request header: {}", failed.detail);
        }
    }
    Next::Continue
}

/// Answers a refused request locally.
pub fn refuse(host: &mut impl StreamHost, refusal: Refusal<'_>) -> Next {
    host.send_local_response(refusal.status, refusal.body, refusal.details);
    Next::Stop
}

/// Adds one to the counter of `slot` (a failure is logged at debug: counting never refuses).
fn count(host: &mut impl StreamHost, compiled: &Compiled, slot: Slot) {
    if let Some(&id) = compiled.ids.get(slot) {
        if let Err(e) = host.increment_counter(id) {
            debug!("cannot count {}: {e:?}", compiled.slots.names()[slot]);
        }
    }
}

/// Writes filter state `key` (a failure is logged at debug, never fatal).
fn set_filter_state(host: &mut impl StreamHost, key: &str, value: &str) {
    if let Err(e) = host.set_filter_state(key, value) {
        debug!("cannot set filter state {key}: {e:?}");
    }
}

/// The request headers, read from Envoy; all lines are read into `spare` (the worker's lines
/// of its previous request).
struct HostHeaders<'h, H> {
    host: &'h mut H,
    spare: Vec<(String, String)>,
}

impl<H: StreamHost> HeaderSource for HostHeaders<'_, H> {
    type Error = HostError;

    fn value(&mut self, name: &str) -> Result<Option<String>, HostError> {
        self.host.request_header(name)
    }

    fn lines(&mut self) -> Result<Vec<(String, String)>, HostError> {
        self.host.request_header_lines(&mut self.spare)?;
        Ok(std::mem::take(&mut self.spare))
    }
}

/// The request in Envoy, as the core edits it: its headers (the header plan, the rate-limit key,
/// the link header) and its filter state (the facts).
pub(crate) struct HostEdits<'h, H>(pub(crate) &'h mut H);

impl<H: StreamHost> HeaderMap for HostEdits<'_, H> {
    type Error = HostError;

    fn set(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.0.set_request_header(name, value)
    }

    fn remove(&mut self, name: &str) -> Result<(), HostError> {
        self.0.remove_request_header(name)
    }

    fn add_absent(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.0.add_request_header(name, value)
    }
}

impl<H: StreamHost> FactSink for HostEdits<'_, H> {
    fn write_fact(&mut self, fact: Fact, value: &str) {
        set_filter_state(self.0, fact.full_name(), value);
    }
}

/// Filter state for access logs (the core's facts of the decision, under Envoy's names of the
/// `.wasm`'s), and the debug line of the decision.
fn record(host: &mut impl StreamHost, policy: &Policy, decision: &Decision, client: Option<&str>) {
    each_fact(policy, decision, client, |fact, value| {
        set_filter_state(host, fact.full_name(), value)
    });
    debug!("{}", describe(policy, decision, client));
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
