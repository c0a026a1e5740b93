//! The network-filter side (docs/network-mode.md): a stream context per connection that asks the core for
//! one [`Decision`] when the connection opens and closes it when refused, and the handling of a
//! configuration loaded as the other kind of filter than its `filter_type` says.
//!
//! Which kind of context a new context is does not come from the configuration: the SDK's
//! dispatcher asks the root ([`loaded_as`]) at `proxy_on_context_create`, and a context of the
//! wrong kind would make it panic (trap) on the first callback of the other kind. So the root
//! asks Envoy what the new context is: an HTTP stream has `request.protocol`, a TCP connection
//! has none. The configured `filter_type` is then checked against that ([`Mismatch`]):
//! a mismatch refuses every request (500) or connection (closed), logged once.
//!
//! A refused connection is closed from `on_new_connection`, which returns `Pause`: the filters
//! after this one (`tcp_proxy`) never see the connection, so no upstream connection is opened.

use std::rc::Rc;

use log::{debug, error};
#[cfg(target_arch = "wasm32")]
use proxy_wasm::traits::{Context, HttpContext, StreamContext};
use proxy_wasm::types::Action;

use super::compiled::Compiled;
#[cfg(target_arch = "wasm32")]
use super::{local_reply, reply_headers};
use super::{property, record_facts};
use crate::host::{self, PropertyPath, StreamHost};
use client_ip_core::connection::Connection as ConnectionInfo;
use client_ip_core::facts::describe_connection;
use client_ip_core::filter_type::{FilterType, Mismatch};
use client_ip_core::identity::Link;
use client_ip_core::policy::{Decision, Downstream, Policy};

/// `request.protocol`: Envoy sets it for every HTTP stream (HTTP/1.0 to HTTP/3) before the
/// filter's context is created; a TCP connection has none.
#[cfg(target_arch = "wasm32")]
const REQUEST_PROTOCOL: PropertyPath = PropertyPath::fixed(b"request\0protocol");
/// The TLS SNI of the downstream connection (empty without one).
const SERVER_NAME: PropertyPath = PropertyPath::fixed(b"connection\0requested_server_name");
/// Read when the `set_filter_state` value is missing: on a network filter, the connection's
/// remote address (the PROXY protocol source when the listener filter found one).
const SOURCE_ADDRESS: PropertyPath = PropertyPath::fixed(b"source\0address");

/// What Envoy is creating the new context as, asked from `RootContext::get_type` (the new
/// context is the host's current one then). `fallback` answers when the host will not say.
#[cfg(target_arch = "wasm32")]
pub(super) fn loaded_as(fallback: FilterType) -> FilterType {
    match host::property(&REQUEST_PROTOCOL) {
        Ok(Some(_)) => FilterType::Http,
        Ok(None) => FilterType::Network,
        Err(status) => {
            debug!("cannot read request.protocol ({status:?}); assuming {fallback:?}");
            fallback
        }
    }
}

/// Logs a mismatch once per configuration (per worker), not once per request or connection.
fn log_mismatch(compiled: &Compiled, mismatch: &Mismatch) {
    if !compiled.mismatch_logged.replace(true) {
        error!("{}", mismatch.message());
    }
}

/// Closes the downstream connection; the connection stays paused if the host refuses.
fn close(host: &mut impl StreamHost) -> Action {
    if let Err(status) = host.close_downstream() {
        debug!("cannot close the downstream connection: {status:?}");
    }
    Action::Pause
}

/// One downstream connection, holding the configuration current when it opened.
pub(super) struct Connection {
    compiled: Option<Rc<Compiled>>,
    /// Refused (or not decidable): no byte of it goes on, even if the close is late.
    refused: bool,
}

impl Connection {
    pub(super) fn new(compiled: Option<Rc<Compiled>>) -> Self {
        Connection {
            compiled,
            refused: false,
        }
    }

    /// Refused (or not decidable): its data is held (native unit tests).
    #[cfg(test)]
    pub(super) fn is_refused(&self) -> bool {
        self.refused
    }

    /// The connection opened: decide, and close it when refused (through `host`).
    pub(super) fn decide(&mut self, host: &mut impl StreamHost) -> Action {
        // Envoy creates contexts only for an accepted configuration; fail closed if not.
        let Some(compiled) = self.compiled.as_deref() else {
            error!("client-ip-filter: not configured; closing the connection");
            self.refused = true;
            return close(host);
        };
        let policy = &compiled.policy;
        if let Err(mismatch) = policy.filter_type.check_loaded_as(FilterType::Network) {
            log_mismatch(compiled, &mismatch);
            self.refused = true;
            return close(host);
        }
        let filter_state = property(host, &compiled.downstream_path);
        let downstream =
            Downstream::read(filter_state.as_deref(), || property(host, &SOURCE_ADDRESS));
        // The SNI only when a rule's `hosts` can use it: one host call per connection otherwise.
        let server_name = if policy.reads_server_name() {
            property(host, &SERVER_NAME)
                .map(host::text)
                .unwrap_or_default()
        } else {
            String::new()
        };
        let link = compiled
            .link
            .as_ref()
            .map_or_else(Link::default, |l| l.read(host));
        let decision = policy.decide_connection(&ConnectionInfo {
            downstream,
            server_name: &server_name,
            link,
        });
        compiled.metrics.count(&decision);
        if let Some(reader) = &compiled.link {
            let text = decision.link.identity.map(|id| id.text());
            reader.record(host, text.as_deref());
        }
        record(host, policy, &decision, &server_name);
        if Policy::closes(&decision) {
            self.refused = true;
            return close(host);
        }
        Action::Continue
    }
}

#[cfg(target_arch = "wasm32")]
impl Context for Connection {}

#[cfg(target_arch = "wasm32")]
impl StreamContext for Connection {
    fn on_new_connection(&mut self) -> Action {
        self.decide(&mut host::Abi)
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        if self.refused {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

/// Filter state for access logs, and the debug line of the decision.
fn record(host: &mut impl StreamHost, policy: &Policy, decision: &Decision, server_name: &str) {
    let client = decision.client.map(|c| c.text());
    let client = client.as_ref().map(|t| t.as_str());
    // As in HTTP mode (the core's facts): the decision written for a refusal only.
    record_facts(host, policy, decision, client);
    debug!(
        "{}",
        describe_connection(policy, decision, client, server_name)
    );
}

/// A context for a configuration loaded as the other kind of filter than its `filter_type`
/// says (or for no configuration at all): refuses every request or connection.
#[cfg(target_arch = "wasm32")]
pub(super) struct Refusing {
    compiled: Option<Rc<Compiled>>,
}

#[cfg(target_arch = "wasm32")]
impl Refusing {
    pub(super) fn new(compiled: Option<Rc<Compiled>>) -> Self {
        Refusing { compiled }
    }

    fn log(&self, loaded_as: FilterType) {
        if let Some(compiled) = self.compiled.as_deref() {
            if let Err(m) = compiled.policy.filter_type.check_loaded_as(loaded_as) {
                log_mismatch(compiled, &m);
            }
        }
    }
}

#[cfg(target_arch = "wasm32")]
impl Context for Refusing {}

#[cfg(target_arch = "wasm32")]
impl HttpContext for Refusing {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.log(FilterType::Http);
        local_reply(
            &mut host::Abi,
            Mismatch::HTTP_STATUS,
            Mismatch::HTTP_BODY,
            &reply_headers(),
            Mismatch::HTTP_DETAILS,
        )
    }
}

#[cfg(target_arch = "wasm32")]
impl StreamContext for Refusing {
    fn on_new_connection(&mut self) -> Action {
        self.log(FilterType::Network);
        close(&mut host::Abi)
    }

    fn on_downstream_data(&mut self, _data_size: usize, _end_of_stream: bool) -> Action {
        Action::Pause
    }
}
