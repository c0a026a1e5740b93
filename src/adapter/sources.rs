//! The fetching and adopting side of lists from a list server (spec §7), for one configuration
//! in one VM. The decisions are the core's (`crate::source`); this file makes the host calls.
//!
//! One fetch per Envoy: Envoy runs one VM per worker thread plus VMs on the main thread, and
//! every root context ticks. The VMs of one configuration share a *lease* in Envoy's shared
//! data (keyed by a hash of the configuration, since Istio sets no `vm_id` and every plugin
//! shares one namespace). Only the lease holder fetches: it parses a body once, publishes the
//! compiled list as a [`Table`] and a small [`Status`]. Every VM (the holder too) polls the
//! status each tick (24 bytes copied) and copies the table only when its version changed.
//!
//! Which VM holds the lease is decided in `source::lease`: in short, VMs that serve no requests
//! are preferred (the main thread's never does), so the parse does not stall a worker, and a lease
//! is used only once it still names its taker a tick later, so two VMs racing for a free key
//! (Envoy's CAS has no "create if absent") cannot both fetch.

use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use log::{debug, info, warn};

use crate::host::{self, HostError};
use crate::ipset::IpSet;
use crate::policy::Policy;
use crate::source::bind::{bind, SourcePlan};
use crate::source::format::{self, Rejection};
use crate::source::lease::{self, Step, Vm};
use crate::source::schedule::{self, Schedule};
use crate::source::table::{self, Lease, Status, Table};

/// The tick while settling (see [`Feeds::settling`]), and for how long after configure.
pub(super) const SETTLING_TICK_MS: u32 = 100;
const SETTLING_MS: u64 = 10_000;
/// A fetch whose response has not come this long after its timeout is given up.
const LOST_CALL_MS: u64 = 5_000;
/// `CasMismatch`.
const CAS_MISMATCH: u32 = 8;

/// The sources of one configuration in this VM.
pub(super) struct Feeds {
    template: Policy,
    plan: SourcePlan,
    prefix: String,
    token: u64,
    rng: u64,
    created_ms: u64,
    /// This VM holds a confirmed lease and fetches.
    fetching: bool,
    /// When this VM took the lease (not yet confirmed).
    taken_ms: Option<u64>,
    feeds: Vec<Feed>,
}

/// One source in this VM.
struct Feed {
    /// Some list names it.
    used: bool,
    /// The last good list adopted (from this VM's fetch or the published table).
    list: Option<Rc<IpSet>>,
    version: u64,
    last_good_ms: Option<u64>,
    available: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    // Fetching (lease holder only).
    schedule: Schedule,
    in_flight: Option<(u32, u64)>,
    failing: bool,
    metrics: FeedMetrics,
}

#[derive(Default)]
struct FeedMetrics {
    fetch_ok: Option<u32>,
    not_modified: Option<u32>,
    fetch_failed: Option<u32>,
    rejected: Option<u32>,
    skipped_lines: Option<u32>,
    entries: Option<u32>,
    age_s: Option<u32>,
}

impl FeedMetrics {
    fn define(name: &str) -> FeedMetrics {
        let counter = |what: &str| {
            let full = format!("client_ip.source.{name}.{what}");
            host::define_counter(&full)
                .map_err(|e| debug!("cannot define {full}: {e:?}"))
                .ok()
        };
        let gauge = |what: &str| {
            let full = format!("client_ip.source.{name}.{what}");
            host::define_gauge(&full)
                .map_err(|e| debug!("cannot define {full}: {e:?}"))
                .ok()
        };
        FeedMetrics {
            fetch_ok: counter("fetch_ok"),
            not_modified: counter("not_modified"),
            fetch_failed: counter("fetch_failed"),
            rejected: counter("rejected"),
            skipped_lines: counter("skipped_lines"),
            entries: gauge("entries"),
            age_s: gauge("age_s"),
        }
    }
}

fn add(id: Option<u32>, n: u64) {
    if let Some(id) = id {
        if n > 0 {
            let _ = host::increment_metric(id, n as i64);
        }
    }
}

fn set_gauge(id: Option<u32>, value: u64) {
    if let Some(id) = id {
        let _ = host::record_metric(id, value);
    }
}

/// FNV-1a over the configuration: the shared-data namespace of its sources.
fn config_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A random u64 (the standard library seeds its hasher keys from WASI `random_get`), mixed with
/// the clock.
fn random(now: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now);
    h.finish() | 1
}

impl Feeds {
    /// The feeds of a configuration (`config` its bytes); None when no list names a source.
    pub(super) fn new(config: &[u8], template: Policy, plan: SourcePlan) -> Option<Feeds> {
        if plan.is_empty() {
            return None;
        }
        let now = host::now_ms().unwrap_or(0);
        let feeds = plan
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| Feed {
                used: plan.is_used(i),
                list: None,
                version: 0,
                last_good_ms: None,
                available: false,
                etag: None,
                last_modified: None,
                schedule: Schedule::new(s.refresh_s),
                in_flight: None,
                failing: false,
                metrics: if plan.is_used(i) {
                    FeedMetrics::define(&s.name)
                } else {
                    FeedMetrics::default()
                },
            })
            .collect();
        Some(Feeds {
            prefix: format!("client_ip_filter.sources.{:016x}.", config_hash(config)),
            token: random(now),
            rng: random(now ^ 0x9e37_79b9_7f4a_7c15),
            created_ms: now,
            fetching: false,
            taken_ms: None,
            template,
            plan,
            feeds,
        })
    }

    /// The policy bound to the sources' current lists (an unavailable source is None).
    pub(super) fn policy(&self) -> Policy {
        let current: Vec<Option<&IpSet>> = self
            .feeds
            .iter()
            .map(|f| f.list.as_deref().filter(|_| f.available))
            .collect();
        bind(&self.template, &self.plan, &current)
    }

    fn key(&self, source: usize, what: &str) -> String {
        format!("{}{}.{what}", self.prefix, self.plan.sources[source].name)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Whether this VM should tick fast: in the first seconds after configure, until it has
    /// adopted every source's list (or given up on the lease). Envoy configures a first VM on
    /// the main thread and destroys it at once, without `on_done`: the lease is only taken on a
    /// tick, which that VM never gets, and a fast tick makes the first load take ~0.3 s.
    pub(super) fn settling(&self) -> bool {
        let now = host::now_ms().unwrap_or(u64::MAX);
        now < self.created_ms + SETTLING_MS
            && (self.taken_ms.is_some() && !self.fetching
                || self.feeds.iter().any(|f| f.used && f.list.is_none()))
    }

    /// Called at configure time (`configuring`: only adopts what is published) and on every
    /// tick. `serves` tells whether this VM has served a request. Returns true when the policy
    /// must be bound again.
    pub(super) fn tick(&mut self, serves: bool, configuring: bool) -> bool {
        let Ok(now) = host::now_ms() else {
            return false;
        };
        if !configuring {
            self.lease(now, serves);
        }
        let mut changed = false;
        for i in 0..self.feeds.len() {
            if !self.feeds[i].used {
                continue;
            }
            changed |= self.poll(i, now);
            if self.fetching {
                self.fetch_if_due(i, now);
                if let Some(t) = self.feeds[i].last_good_ms {
                    set_gauge(self.feeds[i].metrics.age_s, schedule::age_s(now, t));
                }
            }
        }
        changed
    }

    /// Takes, renews, hands over or leaves the lease (the decisions are `source::lease`'s).
    fn lease(&mut self, now: u64, serves: bool) {
        let vm = Vm {
            token: self.token,
            serves,
            created_ms: self.created_ms,
            taken_ms: self.taken_ms,
            fetching: self.fetching,
            in_flight: self.feeds.iter().any(|f| f.in_flight.is_some()),
        };
        let idle_other = self.announce_idle(now, &vm);
        let key = format!("{}lease", self.prefix);
        let (current, cas) = match host::shared_data(&key) {
            Ok(Some((bytes, cas))) => (Lease::decode(&bytes), cas),
            Ok(None) => (None, 0),
            Err(e) => {
                debug!("cannot read {key}: {e:?}");
                return;
            }
        };
        match lease::step(now, &vm, current, idle_other) {
            Step::Renew { start } => {
                match host::set_shared_data(&key, &lease::held(now, self.token).encode(), cas) {
                    Ok(()) if start => self.start_fetching(serves),
                    Ok(()) => {}
                    Err(e) => {
                        debug!("lease renewal lost ({e:?})");
                        self.stop_fetching();
                    }
                }
            }
            Step::HandOver => {
                if host::set_shared_data(&key, &[], cas).is_ok() {
                    info!("sources: handing the fetching over to a VM that serves no requests");
                    self.stop_fetching();
                }
            }
            Step::Take => {
                self.stop_fetching();
                match host::set_shared_data(&key, &lease::held(now, self.token).encode(), cas) {
                    Ok(()) => self.taken_ms = Some(now),
                    Err(HostError(CAS_MISMATCH)) => {}
                    Err(e) => debug!("cannot take {key}: {e:?}"),
                }
            }
            Step::Leave => self.stop_fetching(),
        }
    }

    /// Announces this VM as idle when `lease::announces_idle` says so; whether another VM is.
    fn announce_idle(&mut self, now: u64, vm: &Vm) -> bool {
        let key = format!("{}idle", self.prefix);
        let current = match host::shared_data(&key) {
            Ok(Some((bytes, _))) => Lease::decode(&bytes),
            _ => None,
        };
        if lease::announces_idle(now, vm, current) {
            if let Err(e) = host::set_shared_data(&key, &lease::held(now, self.token).encode(), 0) {
                debug!("cannot write {key}: {e:?}");
            }
        }
        lease::idle_other(now, vm, current)
    }

    fn start_fetching(&mut self, serves: bool) {
        self.fetching = true;
        info!(
            "sources: this VM now fetches for this Envoy ({})",
            if serves {
                "a worker: no VM without requests took over"
            } else {
                "it serves no requests"
            }
        );
        for f in &mut self.feeds {
            // Another VM may have fetched until now: go on from its last good time.
            f.schedule
                .resume(f.last_good_ms.filter(|_| f.list.is_some()));
            f.in_flight = None;
        }
    }

    fn stop_fetching(&mut self) {
        if self.fetching {
            info!("sources: another VM fetches for this Envoy now");
        }
        self.fetching = false;
        self.taken_ms = None;
    }

    /// Releases the lease (the VM is going away), so that another VM takes over at once.
    pub(super) fn release(&mut self) {
        if !self.fetching && self.taken_ms.is_none() {
            return;
        }
        let key = format!("{}lease", self.prefix);
        if let Ok(Some((bytes, cas))) = host::shared_data(&key) {
            if Lease::decode(&bytes).is_some_and(|l| l.holder == self.token) {
                let _ = host::set_shared_data(&key, &[], cas);
            }
        }
    }

    /// Adopts a newer published table, and follows availability. True when the policy changes.
    fn poll(&mut self, i: usize, now: u64) -> bool {
        let key = self.key(i, "status");
        let status = match host::shared_data(&key) {
            Ok(Some((bytes, _))) => Status::decode(&bytes),
            Ok(None) => None,
            Err(e) => {
                debug!("cannot read {key}: {e:?}");
                None
            }
        };
        let mut changed = false;
        if let Some(status) = status {
            if status.version != self.feeds[i].version && status.version != 0 {
                changed |= self.adopt_published(i, status.version);
            }
            if self.feeds[i].list.is_some() {
                let f = &mut self.feeds[i];
                f.last_good_ms = f.last_good_ms.max(status.last_good());
            }
        }
        let source = &self.plan.sources[i];
        let f = &mut self.feeds[i];
        let available =
            f.list.is_some() && schedule::available(now, f.last_good_ms, source.max_stale_s);
        if available != f.available {
            f.available = available;
            changed = true;
            if !available && f.list.is_some() {
                // Every VM notices; the one that fetches says it (one line per Envoy).
                let message = format!(
                    "source {}: unavailable: no good body for more than max_stale_s ({} s)",
                    source.name,
                    source.max_stale_s.unwrap_or(0)
                );
                if self.fetching {
                    warn!("{message}");
                } else {
                    debug!("{message}");
                }
            }
        }
        changed
    }

    fn adopt_published(&mut self, i: usize, version: u64) -> bool {
        let key = self.key(i, "table");
        let t0 = host::now_ms().unwrap_or(0);
        let bytes = match host::shared_data(&key) {
            Ok(Some((bytes, _))) => bytes,
            Ok(None) => return false,
            Err(e) => {
                debug!("cannot read {key}: {e:?}");
                return false;
            }
        };
        let t1 = host::now_ms().unwrap_or(0);
        match table::decode_owned(bytes) {
            Ok(t) if t.version >= version => {
                let f = &mut self.feeds[i];
                debug!(
                    "source {}: adopted version {} ({} entries): read {} ms, decoded {} ms",
                    self.plan.sources[i].name,
                    t.version,
                    t.entries,
                    t1 - t0,
                    host::now_ms().unwrap_or(0) - t1
                );
                f.version = t.version;
                f.etag = t.etag;
                f.last_modified = t.last_modified;
                f.list = Some(Rc::new(t.set));
                true
            }
            // The status was written after the table: an older table is caught up next tick.
            Ok(_) => false,
            Err(e) => {
                warn!(
                    "source {}: published table refused ({e:?}); keeping the last good list",
                    self.plan.sources[i].name
                );
                false
            }
        }
    }

    fn fetch_if_due(&mut self, i: usize, now: u64) {
        let source = &self.plan.sources[i];
        let f = &mut self.feeds[i];
        if let Some((_, started)) = f.in_flight {
            if now < started + u64::from(source.timeout_ms) + LOST_CALL_MS {
                return;
            }
            f.in_flight = None;
            self.failed(i, now, "no response came back".into());
            return;
        }
        if !f.schedule.due(now) {
            return;
        }
        let mut headers: Vec<(&str, &str)> = vec![("user-agent", "client-ip-filter")];
        if let Some(etag) = f.etag.as_deref() {
            headers.push(("if-none-match", etag));
        }
        if let Some(lm) = f.last_modified.as_deref() {
            headers.push(("if-modified-since", lm));
        }
        match host::dispatch_get(
            &source.cluster,
            &source.authority,
            &source.path,
            &headers,
            source.timeout_ms,
        ) {
            Ok(token) => {
                debug!("source {}: fetching {}", source.name, source.path);
                f.in_flight = Some((token, now));
            }
            Err(e) => {
                let why = if e == HostError(2) {
                    format!(
                        "sources.{}.cluster: \"{}\" is not a cluster Envoy knows ({e:?}); will retry",
                        source.name, source.cluster
                    )
                } else {
                    format!("cannot send the request ({e:?})")
                };
                self.failed(i, now, why);
            }
        }
    }

    /// The response to one of this VM's fetches. True when the policy changes.
    pub(super) fn response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some(i) = self
            .feeds
            .iter()
            .position(|f| f.in_flight.is_some_and(|(t, _)| t == token))
        else {
            return false;
        };
        self.feeds[i].in_flight = None;
        let now = host::now_ms().unwrap_or(0);
        if num_headers == 0 {
            self.failed(
                i,
                now,
                "no response (connection failure, reset, timeout, or a body over Envoy's 32 MiB buffer)"
                    .into(),
            );
            return false;
        }
        let headers = match host::http_call_response_headers() {
            Ok(h) => h,
            Err(e) => {
                self.failed(i, now, format!("cannot read the response headers ({e:?})"));
                return false;
            }
        };
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let status = header(":status").unwrap_or_default();
        match status.as_str() {
            "200" => self.body(i, now, body_size, header("etag"), header("last-modified")),
            "304" if self.feeds[i].list.is_some() => {
                self.not_modified(i, now);
                false
            }
            _ => {
                self.failed(i, now, format!("status {status}"));
                false
            }
        }
    }

    fn body(
        &mut self,
        i: usize,
        now: u64,
        size: usize,
        etag: Option<String>,
        last_modified: Option<String>,
    ) -> bool {
        let source = &self.plan.sources[i];
        if let Err(r) = format::check_size(size, source.max_bytes) {
            self.rejected(i, now, &r);
            return false;
        }
        let bytes = match host::http_call_response_body(size) {
            Ok(b) => b,
            Err(e) => {
                self.failed(i, now, format!("cannot read the body ({e:?})"));
                return false;
            }
        };
        let accept = format::Accept::of(source, self.plan.is_trusted(i));
        let parsed = format::parse_owned(source.format, &source.select, bytes, &accept);
        let accepted = match parsed {
            Ok(a) => a,
            Err(r) => {
                if let Rejection::NoEntry { skipped_lines } = r {
                    add(self.feeds[i].metrics.skipped_lines, skipped_lines as u64);
                }
                self.rejected(i, now, &r);
                return false;
            }
        };
        // The next version after any published one (another VM may have published before).
        let status_key = self.key(i, "status");
        let published = host::shared_data(&status_key)
            .ok()
            .flatten()
            .and_then(|(b, _)| Status::decode(&b))
            .unwrap_or_default();
        let version = published.version.max(self.feeds[i].version) + 1;
        let entries = accepted.entries as u64;
        let table = Table {
            version,
            entries,
            etag,
            last_modified,
            set: accepted.set,
        };
        let encoded = table::encode(&table);
        let status = Status {
            version,
            last_good_ms: now,
            entries,
        };
        let published = host::set_shared_data(&self.key(i, "table"), &encoded, 0)
            .and_then(|()| host::set_shared_data(&status_key, &status.encode(), 0));
        drop(encoded);
        if let Err(e) = published {
            warn!(
                "source {}: cannot publish the list to the other VMs ({e:?})",
                source.name
            );
        }
        let name = source.name.clone();
        let jitter = (self.next_random() % 1001) as u32;
        let f = &mut self.feeds[i];
        add(f.metrics.fetch_ok, 1);
        add(f.metrics.skipped_lines, accepted.skipped_lines as u64);
        set_gauge(f.metrics.entries, entries);
        set_gauge(f.metrics.age_s, 0);
        f.schedule.succeeded(now, jitter);
        let first = f.list.is_none();
        if first || f.failing {
            info!(
                "source {name}: {} with {entries} entries ({} line(s) skipped)",
                if first { "loaded" } else { "recovered" },
                accepted.skipped_lines
            );
        } else {
            debug!("source {name}: new list, {entries} entries");
        }
        f.failing = false;
        f.version = version;
        f.etag = table.etag;
        f.last_modified = table.last_modified;
        f.list = Some(Rc::new(table.set));
        f.last_good_ms = Some(now);
        f.available = true;
        true
    }

    fn not_modified(&mut self, i: usize, now: u64) {
        let f = &mut self.feeds[i];
        add(f.metrics.not_modified, 1);
        set_gauge(f.metrics.age_s, 0);
        let jitter = (self.next_random() % 1001) as u32;
        let f = &mut self.feeds[i];
        f.schedule.succeeded(now, jitter);
        f.last_good_ms = Some(now);
        if f.failing {
            info!(
                "source {}: recovered (not modified)",
                self.plan.sources[i].name
            );
            f.failing = false;
        }
        let status = Status {
            version: f.version,
            last_good_ms: now,
            entries: 0,
        };
        if let Err(e) = host::set_shared_data(&self.key(i, "status"), &status.encode(), 0) {
            debug!("cannot publish status: {e:?}");
        }
    }

    fn failed(&mut self, i: usize, now: u64, why: String) {
        let f = &mut self.feeds[i];
        add(f.metrics.fetch_failed, 1);
        f.schedule.failed(now);
        let name = &self.plan.sources[i].name;
        if !f.failing {
            warn!(
                "source {name}: fetch failed: {why}; {}, retrying in {} s",
                if f.list.is_some() {
                    "keeping the last good list"
                } else {
                    "no list yet"
                },
                f.schedule.next_ms().saturating_sub(now) / 1000
            );
        } else {
            debug!("source {name}: fetch failed again: {why}");
        }
        f.failing = true;
    }

    fn rejected(&mut self, i: usize, now: u64, why: &Rejection) {
        let f = &mut self.feeds[i];
        add(f.metrics.rejected, 1);
        f.schedule.failed(now);
        f.failing = true;
        warn!(
            "source {}: body rejected: {why}; {}",
            self.plan.sources[i].name,
            if f.list.is_some() {
                "keeping the last good list"
            } else {
                "no list yet"
            }
        );
    }
}
