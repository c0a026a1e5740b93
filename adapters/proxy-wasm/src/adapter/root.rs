//! The root context: compiles the configuration once into an immutable [`Compiled`], shared by
//! every stream that starts while it is current, and ticks: each tick flushes the counters
//! counted in the VM (so `/stats` lags by at most [`FLUSH_PERIOD_MS`]), follows Envoy's log
//! level and drives the list sources (docs/sources.md: lease, fetch, adopt). A source's new list makes a
//! new [`Compiled`] (the policy bound to it): streams already running keep the one they started
//! with, so each request is decided wholly with the old list or wholly with the new one. The
//! counters are flushed once more when the root context is done.

use std::cell::Cell;
use std::rc::Rc;

use log::{debug, error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::ContextType;

use super::compiled::Compiled;
use super::http::Stream;
use super::network::{self, Connection, Refusing};
use super::refresh_log_level;
use super::sources::{Feeds, SETTLING_TICK_MS};
use crate::host;
use client_ip_core::config;
use client_ip_core::filter_type::FilterType;
use client_ip_core::tally::FLUSH_PERIOD_MS;

#[derive(Default)]
pub(super) struct Root {
    compiled: Option<Rc<Compiled>>,
    /// Configurations replaced while streams still held them: their counts are flushed until
    /// the last stream is gone.
    retired: Vec<Rc<Compiled>>,
    /// Envoy has created a context of the configured `filter_type` here: an HTTP configuration
    /// then stops asking (see [`RootContext::get_type`]).
    confirmed: Cell<Option<FilterType>>,
    /// Lists from list servers (docs/sources.md), when the configuration names any.
    feeds: Option<Feeds<host::Abi>>,
    /// This VM has served a request or a connection (a worker's); see `sources`.
    serves: Cell<bool>,
    /// The tick period asked for (0: none yet).
    tick_ms: u32,
}

impl Root {
    /// Makes `compiled` current for the streams that start from now; the previous one is
    /// retired (its counts are still flushed while streams hold it).
    fn install(&mut self, mut compiled: Compiled) {
        // Bound from the feeds' current lists just before: their versions decide its requests.
        compiled.lists = self.feeds.as_ref().map(Feeds::versions);
        if let Some(previous) = self.compiled.replace(Rc::new(compiled)) {
            self.retired.push(previous);
        }
    }

    /// Binds the policy to the sources' current lists again.
    fn rebind(&mut self) {
        let Some(feeds) = &self.feeds else { return };
        match Compiled::new(feeds.policy()) {
            Ok(compiled) => self.install(compiled),
            Err(e) => error!("{e}"),
        }
    }

    /// Flushes every configuration's counts; forgets the retired ones no stream holds any more.
    fn flush_counters(&mut self) {
        if let Some(compiled) = &self.compiled {
            compiled.metrics.flush();
            compiled.metrics.warn();
        }
        self.retired.retain(|old| {
            old.metrics.flush();
            old.metrics.warn();
            Rc::strong_count(old) > 1
        });
    }

    /// The tick: every [`FLUSH_PERIOD_MS`], faster while sources settle after configure.
    fn set_tick(&mut self) {
        let fast = self.feeds.as_ref().is_some_and(Feeds::settling);
        let period = if fast {
            SETTLING_TICK_MS
        } else {
            FLUSH_PERIOD_MS
        };
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
        let _background = host::count::Background::enter();
        let changed = self
            .feeds
            .as_mut()
            .is_some_and(|f| f.response(token_id, num_headers, body_size));
        if changed {
            self.rebind();
        }
    }

    fn on_done(&mut self) -> bool {
        let _background = host::count::Background::enter();
        self.flush_counters();
        if let Some(feeds) = &mut self.feeds {
            feeds.release();
        }
        true
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let _background = host::count::Background::enter();
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
        debug!("request headers read: {:?}", policy.header_reads());
        // Lists naming sources start unavailable; the first fetch is sent right away (by the
        // VM that takes the lease) and every VM adopts the list on a later tick.
        self.feeds = Feeds::new(host::Abi, &bytes, policy.clone(), plan);
        let policy = self.feeds.as_ref().map_or(policy, Feeds::policy);
        match Compiled::new(policy) {
            Ok(compiled) => self.install(compiled),
            Err(e) => {
                error!("{e}");
                return false;
            }
        }
        self.confirmed.set(None);
        if let Some(feeds) = &mut self.feeds {
            if feeds.tick(self.serves.get(), true) {
                self.rebind();
            }
        }
        self.set_tick();
        true
    }

    fn on_tick(&mut self) {
        let _background = host::count::Background::enter();
        host::count::report();
        self.flush_counters();
        refresh_log_level();
        let serves = self.serves.get();
        if self.feeds.as_mut().is_some_and(|f| f.tick(serves, false)) {
            self.rebind();
        }
        self.set_tick();
    }

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
        host::count::context();
        self.serves.set(true);
        match &self.compiled {
            Some(c) if c.policy.filter_type != FilterType::Http => {
                Some(Box::new(Refusing::new(self.compiled.clone())))
            }
            _ => Some(Box::new(Stream::new(self.compiled.clone()))),
        }
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        host::count::context();
        self.serves.set(true);
        match &self.compiled {
            Some(c) if c.policy.filter_type == FilterType::Network => {
                Some(Box::new(Connection::new(self.compiled.clone())))
            }
            _ => Some(Box::new(Refusing::new(self.compiled.clone()))),
        }
    }
}
