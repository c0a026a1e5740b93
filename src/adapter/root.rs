//! The root context: compiles the configuration once into an immutable [`Compiled`], shared by
//! every stream that starts while it is current, and ticks: each tick flushes the counters
//! counted in the VM (so `/stats` lags by at most [`FLUSH_PERIOD_MS`]) and follows Envoy's log
//! level. The counters are flushed once more when the root context is done.

use std::rc::Rc;

use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::http::Stream;
use super::identity::LinkReader;
use super::metrics::Metrics;
use super::{refresh_log_level, reply_headers};
use crate::config;
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
}

#[derive(Default)]
pub(super) struct Root {
    compiled: Option<Rc<Compiled>>,
    /// Configurations replaced while streams still held them: their counts are flushed until
    /// the last stream is gone.
    retired: Vec<Rc<Compiled>>,
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
        info!(
            "configured: {} rule(s), forwarding {:?}",
            policy.access.rules.len(),
            policy.forwarding.headers
        );
        let reads = policy.header_reads();
        debug!("request headers read: {reads:?}");
        let previous = self.compiled.replace(Rc::new(Compiled {
            downstream_path: PropertyPath::new(&["filter_state", &policy.downstream_filter_state]),
            reply_headers: reply_headers(),
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

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream::new(self.compiled.clone())))
    }
}
