//! Lists from a list server (docs/sources.md) in the native build: the host side of the core's
//! source state machine (`source::machine`), the same one the wasm build drives. This module only
//! does I/O: it feeds the machine its events (ticks, a fetch sent, a response) and performs the
//! actions it returns (send, write or read a shared value, count, log, bind again). Every decision
//! — lease, schedule, acceptance, versions, integrity, the log lines — is the machine's.
//!
//! Where it runs. Everything here runs on Envoy's main thread, in the HTTP filter
//! configuration's hooks: `on_http_filter_config_new`, `on_http_filter_config_scheduled` (the
//! ticks) and `on_http_filter_config_http_callout_done` (a response, parsed right there). The
//! main thread never serves a request, so a 1M-entry body parsed there delays no request; it is
//! where Envoy itself compiles configuration. A thread of the module's own ([`Ticker`]) only
//! sleeps and asks Envoy's scheduler for the next tick: it touches no list and no Envoy object
//! but the scheduler, which is meant to be committed from any thread. Parsing on a thread of our
//! own would need the machine to move across threads and its every action to travel back to the
//! main thread (callouts can only be sent from there): more moving parts for no request served
//! sooner.
//!
//! One table per process. The machine publishes a list once into the process's [`Store`] and
//! adopts it from there; the policy bound to it is one value shared by every worker through
//! [`Published`], switched atomically: a stream takes the policy current when it starts and keeps
//! it, so each request is decided wholly with the old list or wholly with the new one.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{debug, info};

use client_ip_core::bind::{bind, SourcePlan};
use client_ip_core::policy::Policy;
use client_ip_core::source::machine::{
    Action, Counter, Gauge, Head, Level, Machine, SendError, SourceIo, Written, SETTLING_MS,
};
use client_ip_core::source::machine::{Seen, Shared};
use client_ip_core::source::Source;

use crate::abi::callout::{self as abi, callout_result, init_result, ModuleHeader};
use crate::abi::{EnvoyBuffer, ModuleBuffer};
use crate::published::Published;
use crate::store::{Store, WriteError};
use crate::ticker::Ticker;

/// The tick while settling after configure, and after it (the period the wasm build's root
/// context ticks at).
const SETTLING_TICK_MS: u32 = 100;
const TICK_MS: u32 = 250;

/// The policy of a configuration bound to its sources' current lists, with the versions of those
/// lists (filter state `wasm.client_ip_lists`, docs/sources.md).
pub struct Bound {
    /// The policy requests are decided with.
    pub policy: Policy,
    /// `name=version` per used source (`name=-` while unavailable), comma-separated.
    pub lists: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random(now: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now);
    h.finish()
}

fn module_buffer(s: &[u8]) -> ModuleBuffer {
    ModuleBuffer {
        ptr: s.as_ptr().cast(),
        length: s.len(),
    }
}

/// What the sources do with Envoy from the configuration's hooks: the seam of [`Feeds`], Envoy's
/// in the module ([`ConfigEnvoy`]), a fake list server in the unit tests.
trait ConfigHost {
    /// Defines a counter (or a gauge); its id.
    fn define(&self, name: &str, gauge: bool) -> Option<usize>;
    /// Sends `GET path` with `:authority` and the extra headers to `cluster`; the callout's id.
    fn send(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(String, String)],
        timeout_ms: u32,
    ) -> Result<u64, SendError>;
    /// Adds `n` to counter `id`.
    fn increment(&self, id: usize, n: u64);
    /// Sets gauge `id`.
    fn set_gauge(&self, id: usize, value: u64);
}

/// The configuration's side of Envoy, for the calls made from its hooks on the main thread.
#[derive(Clone, Copy)]
struct ConfigEnvoy(abi::ConfigEnvoyPtr);

impl ConfigHost for ConfigEnvoy {
    fn define(&self, name: &str, gauge: bool) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: the configuration is alive while its hooks run; `id` outlives the call.
        let status = unsafe {
            if gauge {
                abi::envoy_dynamic_module_callback_http_filter_config_define_gauge(
                    self.0,
                    module_buffer(name.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            } else {
                crate::abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    self.0,
                    module_buffer(name.as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            }
        };
        if status != 0 {
            debug!("cannot define {name}: status {status}");
            return None;
        }
        Some(id)
    }

    fn send(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        extra: &[(String, String)],
        timeout_ms: u32,
    ) -> Result<u64, SendError> {
        let mut pairs: Vec<(&str, &str)> = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let headers: Vec<ModuleHeader> = pairs
            .iter()
            .map(|(k, v)| ModuleHeader {
                key: module_buffer(k.as_bytes()),
                value: module_buffer(v.as_bytes()),
            })
            .collect();
        let mut id = 0u64;
        // SAFETY: every buffer outlives the call; Envoy copies them.
        let status = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                module_buffer(cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                module_buffer(&[]),
                u64::from(timeout_ms),
            )
        };
        match status {
            init_result::SUCCESS => Ok(id),
            init_result::CLUSTER_NOT_FOUND => Err(SendError::UnknownCluster),
            init_result::MISSING_REQUIRED_HEADERS => {
                Err(SendError::Other("missing required headers".into()))
            }
            init_result::DUPLICATE_CALLOUT_ID => Err(SendError::Other("duplicate callout".into())),
            init_result::CANNOT_CREATE_REQUEST => {
                Err(SendError::Other("cannot create the request".into()))
            }
            other => Err(SendError::Other(format!("callout status {other}"))),
        }
    }

    fn increment(&self, id: usize, n: u64) {
        // SAFETY: main thread, in a hook of the live configuration.
        let status = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                n,
            )
        };
        if status != 0 {
            debug!("cannot increment counter {id}: status {status}");
        }
    }

    fn set_gauge(&self, id: usize, value: u64) {
        // SAFETY: as above.
        let status = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_set_gauge(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            )
        };
        if status != 0 {
            debug!("cannot set gauge {id}: status {status}");
        }
    }
}

/// The metric ids of one source.
#[derive(Default)]
struct FeedMetrics {
    counters: [Option<usize>; 5],
    gauges: [Option<usize>; 2],
}

fn counter_slot(c: Counter) -> usize {
    match c {
        Counter::FetchOk => 0,
        Counter::NotModified => 1,
        Counter::FetchFailed => 2,
        Counter::Rejected => 3,
        Counter::SkippedLines => 4,
    }
}

impl FeedMetrics {
    fn define(envoy: &dyn ConfigHost, name: &str) -> FeedMetrics {
        let full = |what: &str| format!("client_ip.source.{name}.{what}");
        let counter = |what: &str| envoy.define(&full(what), false);
        let gauge = |what: &str| envoy.define(&full(what), true);
        FeedMetrics {
            counters: [
                counter("fetch_ok"),
                counter("not_modified"),
                counter("fetch_failed"),
                counter("rejected"),
                counter("skipped_lines"),
            ],
            gauges: [gauge("entries"), gauge("age_s")],
        }
    }
}

/// The machine of one configuration, with what its actions need.
struct Feeds {
    envoy: Box<dyn ConfigHost>,
    machine: Machine,
    template: Policy,
    plan: SourcePlan,
    metrics: Vec<FeedMetrics>,
    /// The body of the response being handed to the machine (a callout delivers it whole).
    body: Option<Vec<u8>>,
    changed: bool,
}

impl Feeds {
    /// The feeds of a configuration; None when no list names a source.
    fn new(
        host: Box<dyn ConfigHost>,
        config: &[u8],
        template: Policy,
        plan: SourcePlan,
    ) -> Option<Feeds> {
        let now = now_ms();
        let uses = plan.uses();
        let machine = Machine::new(config, uses, now, random(now))?;
        Store::process().acquire(machine.prefix());
        let metrics = (0..plan.sources.len())
            .map(|i| {
                if plan.is_used(i) {
                    FeedMetrics::define(host.as_ref(), &plan.sources[i].name)
                } else {
                    FeedMetrics::default()
                }
            })
            .collect();
        let mut feeds = Feeds {
            envoy: host,
            machine,
            template,
            plan,
            metrics,
            body: None,
            changed: false,
        };
        feeds.tick(true);
        Some(feeds)
    }

    fn bound(&self) -> Bound {
        Bound {
            policy: bind(&self.template, &self.plan, &self.machine.lists()),
            lists: self.machine.versions_text(),
        }
    }

    fn seen(&self, configuring: bool) -> Seen {
        let m = &self.machine;
        let store = Store::process();
        Seen {
            lease: if configuring {
                None
            } else {
                store.get(&m.lease_key())
            },
            idle: if configuring {
                None
            } else {
                store.get(&m.idle_key())
            },
            status: (0..m.sources().len())
                .map(|i| {
                    if m.is_used(i) {
                        store.get(&m.status_key(i))
                    } else {
                        None
                    }
                })
                .collect(),
        }
    }

    /// A tick (configure time: only adopts what is published). True when the lists changed.
    fn tick(&mut self, configuring: bool) -> bool {
        let seen = self.seen(configuring);
        // The main thread serves no request: the machine treats it as a VM that serves none.
        let actions = self.machine.tick(now_ms(), false, configuring, &seen);
        self.perform(actions);
        std::mem::take(&mut self.changed)
    }

    /// A callout's outcome. True when the lists changed.
    fn response(&mut self, id: u64, result: u32, head: Option<(Head, Vec<u8>)>) -> bool {
        let Ok(token) = u32::try_from(id) else {
            return false;
        };
        if self.machine.awaits(token).is_none() {
            return false;
        }
        let head = match (result, head) {
            (callout_result::SUCCESS, Some((head, body))) => {
                self.body = Some(body);
                head
            }
            _ => Head::None,
        };
        let actions = self.machine.response(token, now_ms(), head);
        self.perform(actions);
        self.body = None;
        std::mem::take(&mut self.changed)
    }

    /// Performs the machine's actions, and those its answers to their outcomes bring
    /// ([`Machine::perform`]), through Envoy and the process's store.
    fn perform(&mut self, actions: Vec<Action>) {
        let mut io = Io {
            envoy: self.envoy.as_ref(),
            store: Store::process(),
            metrics: &self.metrics,
            body: &mut self.body,
            changed: &mut self.changed,
        };
        self.machine.perform(actions, &mut io);
    }
}

/// The host calls of the machine's actions ([`SourceIo`]), for one configuration's feeds.
struct Io<'a> {
    envoy: &'a dyn ConfigHost,
    store: &'a Store,
    metrics: &'a [FeedMetrics],
    /// The body of the response being handled (a callout delivers it whole).
    body: &'a mut Option<Vec<u8>>,
    changed: &'a mut bool,
}

impl SourceIo for Io<'_> {
    fn now_ms(&mut self) -> u64 {
        now_ms()
    }

    fn send(&mut self, s: &Source, headers: &[(String, String)]) -> Result<u32, SendError> {
        self.envoy
            .send(&s.cluster, &s.authority, &s.path, headers, s.timeout_ms)
            .and_then(|id| u32::try_from(id).map_err(|_| SendError::Other("callout id".into())))
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Written {
        match self.store.set(key, value, cas) {
            Ok(()) => Written::Ok,
            Err(WriteError::CasMismatch) => Written::CasMismatch,
            Err(e) => Written::Failed(format!("{e:?}")),
        }
    }

    fn read(&mut self, key: &str) -> Shared {
        self.store.get(key)
    }

    fn body(&mut self, _size: usize) -> Result<Vec<u8>, String> {
        self.body
            .take()
            .ok_or_else(|| "no body with the response".to_string())
    }

    fn count(&mut self, source: usize, counter: Counter, n: u64) {
        if let Some(id) = self.metrics[source].counters[counter_slot(counter)] {
            self.envoy.increment(id, n);
        }
    }

    fn gauge(&mut self, source: usize, gauge: Gauge, value: u64) {
        let slot = match gauge {
            Gauge::Entries => 0,
            Gauge::AgeS => 1,
        };
        if let Some(id) = self.metrics[source].gauges[slot] {
            self.envoy.set_gauge(id, value);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        log::log!(level.into(), "{line}");
    }

    fn rebind(&mut self) {
        *self.changed = true;
    }
}

/// Lists from list servers for one HTTP filter configuration: the machine (main thread only) and
/// what every worker reads, `T` made from the policy bound to the current lists (the HTTP
/// filter's compiled configuration).
pub struct Sources<T> {
    main: ThreadId,
    feeds: RefCell<Feeds>,
    published: Published<T>,
    /// Makes the published value from a new bound policy (main thread).
    make: Box<dyn Fn(Bound) -> T>,
    /// The versions published last, per used source (main thread).
    versions: RefCell<Vec<(String, Option<u64>)>>,
    ticker: Option<Ticker>,
    created_ms: u64,
}

// SAFETY: `feeds` (the machine holds `Rc`s) is touched only on the thread that made it — Envoy's
// main thread, where every configuration hook runs — and every access checks it
// ([`Sources::on_main`]); the workers only call `current`, which reads `published` (a lock).
unsafe impl<T: Send + Sync> Sync for Sources<T> {}
// SAFETY: as above; Envoy destroys the configuration on the main thread.
unsafe impl<T: Send + Sync> Send for Sources<T> {}

impl<T> Sources<T> {
    /// The sources of a configuration (`config` its bytes; `template` and `plan` its compiled
    /// policy); None when no list names a source. `make` makes what the workers read from each
    /// bound policy. Called from `on_http_filter_config_new`.
    pub fn start(
        config_envoy: abi::ConfigEnvoyPtr,
        config: &[u8],
        template: Policy,
        plan: SourcePlan,
        make: impl Fn(Bound) -> T + 'static,
    ) -> Option<Sources<T>> {
        let envoy = ConfigEnvoy(config_envoy);
        let feeds = Feeds::new(Box::new(envoy), config, template, plan)?;
        let published = Published::new(make(feeds.bound()));
        Some(Sources {
            make: Box::new(make),
            versions: RefCell::new(Vec::new()),
            main: std::thread::current().id(),
            feeds: RefCell::new(feeds),
            published,
            ticker: Ticker::start(config_envoy, SETTLING_TICK_MS),
            created_ms: now_ms(),
        })
    }

    /// The value current now (any thread): a stream takes it when it starts.
    pub fn current(&self) -> Arc<T> {
        self.published.load()
    }

    fn on_main<R>(&self, f: impl FnOnce(&mut Feeds) -> R) -> Option<R> {
        if std::thread::current().id() != self.main {
            debug!("sources: a configuration hook ran off the main thread; ignored");
            return None;
        }
        let mut feeds = self.feeds.try_borrow_mut().ok()?;
        Some(f(&mut feeds))
    }

    /// Publishes the policy bound to the current lists to every worker, and logs each source
    /// whose version changed: the process adopted it (the wasm build logs this per worker VM).
    fn republish(&self, feeds: &Feeds) {
        self.published.store((self.make)(feeds.bound()));
        let now: Vec<(String, Option<u64>)> = feeds
            .machine
            .versions()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        if let Ok(mut seen) = self.versions.try_borrow_mut() {
            for (name, version) in &now {
                let before = seen.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v);
                if let Some(v) = version.filter(|v| Some(*v) != before) {
                    debug!("source {name}: adopted version {v} (one table for every worker)");
                }
            }
            *seen = now;
        }
    }

    /// A tick (`on_http_filter_config_scheduled`).
    pub fn tick(&self) {
        self.on_main(|feeds| {
            if feeds.tick(false) {
                self.republish(feeds);
            }
        });
        if let Some(t) = &self.ticker {
            let settling = now_ms() < self.created_ms.saturating_add(SETTLING_MS)
                || self.on_main(|f| f.machine.settling(now_ms())) == Some(true);
            let period = if settling { SETTLING_TICK_MS } else { TICK_MS };
            t.set_period(period);
        }
    }

    /// A callout's outcome (`on_http_filter_config_http_callout_done`).
    ///
    /// # Safety
    /// `headers` and `chunks` are null or point to that many valid entries, valid for the call.
    pub unsafe fn response(
        &self,
        id: u64,
        result: u32,
        headers: *const abi::EnvoyHeader,
        headers_len: usize,
        chunks: *const EnvoyBuffer,
        chunks_len: usize,
    ) {
        let head = (result == callout_result::SUCCESS)
            .then(|| read_response(headers, headers_len, chunks, chunks_len));
        self.on_main(|feeds| {
            if feeds.response(id, result, head) {
                self.republish(feeds);
            }
        });
    }
}

impl<T> Drop for Sources<T> {
    fn drop(&mut self) {
        // Stop the ticks first: no hook of this configuration runs after this.
        self.ticker = None;
    }
}

impl Drop for Feeds {
    /// Hands the lease over at once; the last configuration of this prefix empties its values.
    fn drop(&mut self) {
        let store = Store::process();
        let lease = store.get(&self.machine.lease_key());
        let actions = self.machine.release(&lease);
        self.perform(actions);
        if store.release(self.machine.prefix()) {
            info!(
                "sources: emptied the shared lists of a replaced configuration ({})",
                self.machine.prefix()
            );
        }
    }
}

/// # Safety
/// As [`Sources::response`].
unsafe fn bytes<'a>(b: &EnvoyBuffer) -> &'a [u8] {
    if b.ptr.is_null() || b.length == 0 {
        return &[];
    }
    std::slice::from_raw_parts(b.ptr.cast(), b.length)
}

/// The status, validators and body of a response.
///
/// # Safety
/// As [`Sources::response`].
unsafe fn read_response(
    headers: *const abi::EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) -> (Head, Vec<u8>) {
    let headers: &[abi::EnvoyHeader] = if headers.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(headers, headers_len)
    };
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| bytes(&h.key).eq_ignore_ascii_case(name.as_bytes()))
            .map(|h| String::from_utf8_lossy(bytes(&h.value)).into_owned())
    };
    let chunks: &[EnvoyBuffer] = if chunks.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(chunks, chunks_len)
    };
    let size = chunks.iter().map(|c| c.length).sum();
    let mut body = Vec::with_capacity(size);
    for c in chunks {
        body.extend_from_slice(bytes(c));
    }
    let head = if headers.is_empty() {
        Head::None
    } else {
        Head::Headers {
            status: header(":status").unwrap_or_default(),
            etag: header("etag"),
            last_modified: header("last-modified"),
            body_size: size,
        }
    };
    (head, body)
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
