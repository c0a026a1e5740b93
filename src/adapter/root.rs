//! The root context: compiles the configuration once into an immutable [`Compiled`], shared by
//! every stream that starts while it is current, and ticks: each tick flushes the counters
//! counted in the VM (so `/stats` lags by at most [`FLUSH_PERIOD_MS`]) and follows Envoy's log
//! level. The counters are flushed once more when the root context is done.

use std::cell::Cell;
use std::rc::Rc;

use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;

use super::http::Stream;
use super::identity::LinkReader;
use super::metrics::Metrics;
use super::network::{self, Connection, Refusing};
use super::{refresh_log_level, reply_headers};
use crate::config;
use crate::connection::FilterType;
use crate::host::{self, PropertyPath};
use crate::policy::{HeaderReads, Policy};
use crate::tally::FLUSH_PERIOD_MS;

/// A configuration compiled once, shared by every stream that starts while it is current: the
/// policy, and everything a request needs from the host side prepared ahead of it.
pub(super) struct Compiled {
    pub(super) policy: Policy,
    /// The request headers the policy reads: the only ones fetched from Envoy.
    pub(super) reads: HeaderReads,
    pub(super) metrics: Metrics,
    /// `["filter_state", <downstream_filter_state>]`.
    pub(super) downstream_path: PropertyPath,
    /// The local reply's headers, serialized.
    pub(super) reply_headers: Vec<u8>,
    /// Identity reading (spec §8); None when the configuration uses no identity.
    pub(super) link: Option<LinkReader>,
    /// A `filter_type` mismatch was logged (once per configuration and worker).
    pub(super) mismatch_logged: Cell<bool>,
}

#[derive(Default)]
pub(super) struct Root {
    compiled: Option<Rc<Compiled>>,
    /// Configurations replaced while streams still held them: their counts are flushed until
    /// the last stream is gone.
    retired: Vec<Rc<Compiled>>,
    /// Envoy has created a context of the configured `filter_type` here: an HTTP configuration
    /// then stops asking (see [`RootContext::get_type`]).
    confirmed: Cell<Option<FilterType>>,
}

impl Root {
    /// Flushes every configuration's counts; forgets the retired ones no stream holds any more.
    fn flush_counters(&mut self) {
        if let Some(compiled) = &self.compiled {
            compiled.metrics.flush();
        }
        self.retired.retain(|old| {
            old.metrics.flush();
            Rc::strong_count(old) > 1
        });
    }
}

impl Context for Root {
    fn on_done(&mut self) -> bool {
        self.flush_counters();
        true
    }
}

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
        let link = LinkReader::new(&policy);
        match policy.filter_type {
            FilterType::Http => info!(
                "configured: {} rule(s), forwarding {:?}",
                policy.access.rules.len(),
                policy.forwarding.headers
            ),
            FilterType::Network => info!(
                "configured: filter_type network, {} rule(s)",
                policy.access.rules.len()
            ),
        }
        let reads = policy.header_reads();
        debug!("request headers read: {reads:?}");
        self.confirmed.set(None);
        let previous = self.compiled.replace(Rc::new(Compiled {
            downstream_path: PropertyPath::new(&["filter_state", &policy.downstream_filter_state]),
            reply_headers: reply_headers(),
            mismatch_logged: Cell::new(false),
            policy,
            reads,
            metrics,
            link,
        }));
        if let Some(previous) = previous {
            self.retired.push(previous);
        }
        if let Err(status) = host::set_tick_period(FLUSH_PERIOD_MS) {
            debug!("set_tick_period failed: {status:?}");
        }
        true
    }

    fn on_tick(&mut self) {
        self.flush_counters();
        refresh_log_level();
    }

    /// The kind of the context being created is the kind of filter Envoy loaded the module as
    /// (asked from Envoy, see [`network::loaded_as`]), never the configuration's `filter_type`:
    /// a context of the other kind would trap on its first callback.
    /// The kind of context Envoy is creating. Asked of Envoy (one property read) for each
    /// context, except once an HTTP configuration has seen its first HTTP stream: a root context
    /// belongs to one filter, so from then on every context is an HTTP stream and a request
    /// costs no extra host call. A network configuration asks per connection; so does any
    /// configuration while Envoy has loaded it as the other kind (a mismatch, refused).
    fn get_type(&self) -> Option<ContextType> {
        let configured = self
            .compiled
            .as_ref()
            .map(|c| c.policy.filter_type)
            .unwrap_or_default();
        let loaded_as = match self.confirmed.get() {
            Some(kind) => kind,
            None => {
                let kind = network::loaded_as(configured);
                if kind == configured && kind == FilterType::Http {
                    self.confirmed.set(Some(kind));
                }
                kind
            }
        };
        Some(match loaded_as {
            FilterType::Http => ContextType::HttpContext,
            FilterType::Network => ContextType::StreamContext,
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match &self.compiled {
            Some(c) if c.policy.filter_type != FilterType::Http => {
                Some(Box::new(Refusing::new(self.compiled.clone())))
            }
            _ => Some(Box::new(Stream::new(self.compiled.clone()))),
        }
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        match &self.compiled {
            Some(c) if c.policy.filter_type == FilterType::Network => {
                Some(Box::new(Connection::new(self.compiled.clone())))
            }
            _ => Some(Box::new(Refusing::new(self.compiled.clone()))),
        }
    }
}
