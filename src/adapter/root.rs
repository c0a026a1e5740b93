//! The root context: compiles the configuration once into an immutable [`Compiled`], shared by
//! every stream that starts while it is current, and ticks.

use std::cell::Cell;
use std::rc::Rc;

use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::http::Stream;
use super::metrics::Metrics;
use super::sources::{Feeds, SETTLING_TICK_MS};
use super::{refresh_log_level, reply_headers};
use crate::config;
use crate::host::{self, PropertyPath};
use crate::policy::{HeaderReads, Policy};

/// The root context's tick, in milliseconds: how often it re-reads Envoy's log level.
const TICK_MS: u32 = 1000;

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
    /// `client_ip.unavailable` (spec §7), when a list names a source.
    pub(super) unavailable_counter: Option<u32>,
}

impl Compiled {
    fn new(policy: Policy, unavailable_counter: Option<u32>) -> Result<Compiled, String> {
        let metrics = Metrics::define(&policy)
            .map_err(|(name, status)| format!("cannot define counter {name}: {status:?}"))?;
        let reads = policy.header_reads();
        Ok(Compiled {
            downstream_path: PropertyPath::new(&["filter_state", &policy.downstream_filter_state]),
            reply_headers: reply_headers(),
            policy,
            reads,
            metrics,
            unavailable_counter,
        })
    }
}

#[derive(Default)]
pub(super) struct Root {
    compiled: Option<Rc<Compiled>>,
    /// Lists from list servers (spec §7), when the configuration names any.
    feeds: Option<Feeds>,
    /// This VM has served a request (a worker's); see `sources`.
    serves: Cell<bool>,
    /// The tick period asked for (0: none yet).
    tick_ms: u32,
}

impl Root {
    /// Binds the policy to the sources' current lists again; streams starting from now use it.
    fn rebind(&mut self) {
        let Some(feeds) = &self.feeds else { return };
        match Compiled::new(feeds.policy(), feeds.unavailable_counter()) {
            Ok(compiled) => self.compiled = Some(Rc::new(compiled)),
            Err(e) => error!("{e}"),
        }
    }
}

impl Root {
    /// The tick: [`TICK_MS`], faster while sources settle after configure.
    fn set_tick(&mut self) {
        let fast = self.feeds.as_ref().is_some_and(Feeds::settling);
        let period = if fast { SETTLING_TICK_MS } else { TICK_MS };
        if self.tick_ms != period {
            match host::set_tick_period(period) {
                Ok(()) => self.tick_ms = period,
                Err(status) => debug!("set_tick_period failed: {status:?}"),
            }
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let changed = self
            .feeds
            .as_mut()
            .is_some_and(|f| f.response(token_id, num_headers, body_size));
        if changed {
            self.rebind();
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(feeds) = &mut self.feeds {
            feeds.release();
        }
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
        let (policy, plan, warnings) = match config::parse_sourced(&bytes) {
            Ok(parsed) => parsed,
            Err(e) => {
                error!("invalid configuration: {e}");
                return false;
            }
        };
        for warning in &warnings {
            warn!("configuration: {warning}");
        }
        info!(
            "configured: {} rule(s), forwarding {:?}",
            policy.access.rules.len(),
            policy.forwarding.headers
        );
        debug!("request headers read: {:?}", policy.header_reads());
        // Lists naming sources start unavailable; the first fetch is sent right away (by the
        // VM that takes the lease) and every VM adopts the list on a later tick.
        self.feeds = Feeds::new(&bytes, policy.clone(), plan);
        let policy = self.feeds.as_ref().map_or(policy, Feeds::policy);
        let unavailable = self.feeds.as_ref().and_then(Feeds::unavailable_counter);
        match Compiled::new(policy, unavailable) {
            Ok(compiled) => self.compiled = Some(Rc::new(compiled)),
            Err(e) => {
                error!("{e}");
                return false;
            }
        }
        if let Some(feeds) = &mut self.feeds {
            if feeds.tick(self.serves.get(), true) {
                self.rebind();
            }
        }
        self.set_tick();
        true
    }

    fn on_tick(&mut self) {
        refresh_log_level();
        let serves = self.serves.get();
        if self.feeds.as_mut().is_some_and(|f| f.tick(serves, false)) {
            self.rebind();
        }
        self.set_tick();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        self.serves.set(true);
        Some(Box::new(Stream::new(self.compiled.clone())))
    }
}
