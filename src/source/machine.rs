//! The fetch cycle of one configuration's sources in one VM, as a state machine without I/O
//! (the shape of `quinn-proto` or `rustls`): the adapter feeds it events — a tick with the clock
//! and the shared values it read, a fetch sent, a response's headers, its body, a lease write's
//! outcome, a published table read — and performs the [`Action`]s it returns: send this request,
//! write this shared value, read that table or body, count, set a gauge, log a line, bind the
//! lists' policy again. Every rule of "lists from a list server" is decided here and unit-tested natively.
//!
//! One fetch per Envoy: the VMs of one configuration share a lease (decided in `lease`); only its
//! holder fetches, parses the body once and publishes the list as a table with a small status that
//! every VM polls each tick. Every shared value is sealed (`seal`) with a key derived from the
//! configuration, so another module on the proxy cannot forge or swap one: a value that does not
//! open is ignored. So that such a module cannot freeze the lists either (by overwriting the lease
//! or the status faster than we renew them), a VM that has not seen sane shared state — a genuine
//! lease held by some VM, no forged status, no refused table — for [`ALONE_AFTER_MS`] fetches on
//! its own (and publishes nothing) until it sees sane state again.

use std::rc::Rc;

use super::format::{self, Accept, Rejection};
use super::lease::{self, Step, Vm};
use super::schedule::{self, Schedule};
use super::seal::{Opened, SealKey};
use super::table::{self, Content, Lease, Status, Table};
use super::Source;

mod fetch;
mod perform;
mod vocab;

pub use perform::SourceIo;
pub use vocab::*;

/// A fetch whose response has not come this long after its timeout is given up.
pub const LOST_CALL_MS: u64 = 5_000;
/// How long after configure the VM ticks fast while it settles.
pub const SETTLING_MS: u64 = 10_000;
/// A VM that has seen no sane shared state for this long fetches on its own.
pub const ALONE_AFTER_MS: u64 = 15_000;
/// A published table that was refused is read again at most this often.
pub const TABLE_RETRY_MS: u64 = 5_000;
/// Forged shared values are logged at most this often per VM.
pub const FORGED_LOG_MS: u64 = 300_000;

/// A value read from shared data: its bytes and compare-and-swap token (None: absent).
pub type Shared = Option<(Vec<u8>, u32)>;

/// One source in this VM.
#[derive(Debug)]
struct Feed {
    used: bool,
    trusted: bool,
    list: Option<Rc<Content>>,
    /// Version of the list held (0: none).
    version: u64,
    /// The highest genuine version published.
    published: u64,
    last_good_ms: Option<u64>,
    available: bool,
    etag: Option<String>,
    last_modified: Option<String>,
    schedule: Schedule,
    /// A request out: its token and when it was sent (None while sending).
    in_flight: Option<(Option<u32>, u64)>,
    /// The validators of a 200 whose body is being read.
    pending: Option<(Option<String>, Option<String>)>,
    failing: bool,
    /// A published table refused: its version, when.
    refused: Option<(u64, u64)>,
    /// The status read last did not open.
    status_forged: bool,
    /// The latest last-good time a genuine status gave.
    seen_good_ms: Option<u64>,
}

/// A configured source and how the configuration's lists use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Use {
    /// The source.
    pub source: Source,
    /// Some list names it (only those are fetched).
    pub used: bool,
    /// `client_ip.trusted_proxies` names it (its `min_prefix` applies).
    pub trusted: bool,
}

/// The sources of one configuration in one VM.
#[derive(Debug)]
pub struct Machine {
    sources: Vec<Source>,
    seal: SealKey,
    prefix: String,
    token: u64,
    rng: u64,
    created_ms: u64,
    fetching: bool,
    taken_ms: Option<u64>,
    /// This VM has served a request (as of the last tick).
    serves: bool,
    /// The last tick with sane shared state.
    sane_ms: u64,
    /// This VM fetches on its own (no sane shared state for [`ALONE_AFTER_MS`]).
    alone: bool,
    forged_logged_ms: Option<u64>,
    feeds: Vec<Feed>,
}

/// FNV-1a over the configuration: the shared-data namespace of its sources.
fn config_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn lease_of(bytes: &[u8]) -> Option<Lease> {
    Lease::decode(bytes)
}

fn status_of(bytes: &[u8]) -> Option<Status> {
    Status::decode(bytes)
}

impl Machine {
    /// The machine of a configuration (`config` its bytes) with these sources; None when no list
    /// names one. `random`: a random seed for this VM.
    pub fn new(config: &[u8], uses: Vec<Use>, now: u64, random: u64) -> Option<Machine> {
        if !uses.iter().any(|u| u.used) {
            return None;
        }
        let feeds = uses
            .iter()
            .map(|u| Feed {
                used: u.used,
                trusted: u.trusted,
                list: None,
                version: 0,
                published: 0,
                last_good_ms: None,
                available: false,
                etag: None,
                last_modified: None,
                schedule: Schedule::new(u.source.refresh_s),
                in_flight: None,
                pending: None,
                failing: false,
                refused: None,
                status_forged: false,
                seen_good_ms: None,
            })
            .collect();
        Some(Machine {
            sources: uses.into_iter().map(|u| u.source).collect(),
            seal: SealKey::from_config(config),
            prefix: format!("client_ip_filter.sources.{:016x}.", config_hash(config)),
            token: random | 1,
            rng: (random ^ 0x9e37_79b9_7f4a_7c15) | 1,
            created_ms: now,
            fetching: false,
            taken_ms: None,
            serves: false,
            sane_ms: now,
            alone: false,
            forged_logged_ms: None,
            feeds,
        })
    }

    /// The sources.
    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// Whether source `i` is named by some list (only those are counted and fetched).
    pub fn is_used(&self, i: usize) -> bool {
        self.feeds[i].used
    }

    /// This configuration as retired, for when its sources go away in this VM.
    pub fn retired(&self) -> super::retire::Retired {
        super::retire::Retired::new(
            self.prefix.clone(),
            self.seal,
            self.sources
                .iter()
                .zip(&self.feeds)
                .filter(|(_, f)| f.used)
                .map(|(s, _)| s.name.clone())
                .collect(),
        )
    }

    /// Its shared-data key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lease's shared-data key.
    pub fn lease_key(&self) -> String {
        format!("{}lease", self.prefix)
    }

    /// The idle announcement's shared-data key.
    pub fn idle_key(&self) -> String {
        format!("{}idle", self.prefix)
    }

    /// Source `i`'s status key.
    pub fn status_key(&self, i: usize) -> String {
        format!("{}{}.status", self.prefix, self.sources[i].name)
    }

    /// Source `i`'s table key.
    pub fn table_key(&self, i: usize) -> String {
        format!("{}{}.table", self.prefix, self.sources[i].name)
    }

    /// This VM holds the lease and fetches for the Envoy.
    pub fn fetching(&self) -> bool {
        self.fetching
    }

    /// This VM fetches on its own (shared state not sane).
    pub fn alone(&self) -> bool {
        self.alone
    }

    /// Each source's current list (None while it is unavailable), to bind the policy to.
    pub fn lists(&self) -> Vec<Option<&Content>> {
        self.feeds
            .iter()
            .map(|f| f.list.as_deref().filter(|_| f.available))
            .collect()
    }

    /// Each used source's name and the version of the list [`Machine::lists`] gives for it
    /// (None while it is unavailable): what a policy bound now decides with.
    pub fn versions(&self) -> Vec<(&str, Option<u64>)> {
        self.feeds
            .iter()
            .zip(&self.sources)
            .filter(|(f, _)| f.used)
            .map(|(f, s)| {
                (
                    s.name.as_str(),
                    Some(f.version).filter(|_| f.available && f.list.is_some()),
                )
            })
            .collect()
    }

    /// [`Machine::versions`] as filter state `wasm.client_ip_lists` writes them (docs/sources.md):
    /// `name=version` per used source, `name=-` while unavailable, comma-separated.
    pub fn versions_text(&self) -> String {
        let parts: Vec<String> = self
            .versions()
            .into_iter()
            .map(|(name, v)| match v {
                Some(v) => format!("{name}={v}"),
                None => format!("{name}=-"),
            })
            .collect();
        parts.join(",")
    }

    /// Whether this VM should tick fast: in the first seconds after configure, until it has
    /// adopted every source's list (or given up on the lease). Envoy configures a first VM on
    /// the main thread and destroys it at once, without `on_done`: the lease is only taken on a
    /// tick, which that VM never gets, and a fast tick makes the first load take ~0.3 s.
    pub fn settling(&self, now: u64) -> bool {
        now < self.created_ms.saturating_add(SETTLING_MS)
            && (self.taken_ms.is_some() && !self.fetching
                || self.feeds.iter().any(|f| f.used && f.list.is_none()))
    }

    fn next_jitter(&mut self) -> u32 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x % 1001) as u32
    }

    fn vm(&self, serves: bool) -> Vm {
        Vm {
            token: self.token,
            serves,
            created_ms: self.created_ms,
            taken_ms: self.taken_ms,
            fetching: self.fetching,
            in_flight: self.feeds.iter().any(|f| f.in_flight.is_some()),
        }
    }

    fn sealed_lease(&self, key: &str, lease: Lease) -> Vec<u8> {
        self.seal.seal(key, lease.encode())
    }

    /// A tick (and configure time, `configuring`: only adopts what is published). `serves`: this
    /// VM has served a request.
    pub fn tick(&mut self, now: u64, serves: bool, configuring: bool, seen: &Seen) -> Vec<Action> {
        let mut out = Vec::new();
        self.serves = serves;
        let lease_key = self.lease_key();
        let lease = Opened::of(
            &self.seal,
            &lease_key,
            seen.lease.as_ref().map(|(b, _)| &b[..]),
            lease_of,
        );
        let mut sane = !lease.is_forged();
        if !configuring {
            self.lease(now, serves, &lease, seen, &mut out);
            sane &= lease.clone().genuine().is_some_and(|l| now <= l.expires_ms);
        }
        for i in 0..self.feeds.len() {
            if !self.feeds[i].used {
                continue;
            }
            let status = seen.status.get(i).and_then(Option::as_ref);
            self.poll(i, now, status.map(|(b, _)| &b[..]), &mut out);
            let f = &self.feeds[i];
            sane &= !f.status_forged && f.refused.is_none();
        }
        if !configuring {
            self.follow_sanity(now, sane, &mut out);
        }
        for i in 0..self.feeds.len() {
            if !self.feeds[i].used || !(self.fetching || self.alone) {
                continue;
            }
            self.fetch_if_due(i, now, &mut out);
            if let Some(t) = self.feeds[i].last_good_ms {
                out.push(Action::Gauge {
                    source: i,
                    gauge: Gauge::AgeS,
                    value: schedule::age_s(now, t),
                });
            }
        }
        out
    }

    fn follow_sanity(&mut self, now: u64, sane: bool, out: &mut Vec<Action>) {
        if sane {
            self.sane_ms = now;
            if self.alone {
                self.alone = false;
                self.drop_in_flight();
                out.push(Action::Log(
                    Level::Info,
                    "sources: shared data is sane again; this VM adopts the published lists".into(),
                ));
            }
        } else if !self.alone && now > self.sane_ms.saturating_add(ALONE_AFTER_MS) {
            self.alone = true;
            self.stop_fetching(out);
            for f in &mut self.feeds {
                f.schedule
                    .resume(f.last_good_ms.filter(|_| f.list.is_some()));
            }
            out.push(Action::Log(
                Level::Warn,
                format!(
                    "sources: no genuine lease or status in shared data for {} s (another module \
                     writes our keys?); this VM fetches its lists itself",
                    ALONE_AFTER_MS / 1000
                ),
            ));
        }
    }

    fn forged(&mut self, now: u64, what: &str, out: &mut Vec<Action>) {
        let due = self
            .forged_logged_ms
            .is_none_or(|t| now >= t.saturating_add(FORGED_LOG_MS));
        if due {
            self.forged_logged_ms = Some(now);
            out.push(Action::Log(
                Level::Warn,
                format!(
                    "sources: {what} in shared data does not carry this configuration's seal \
                     (written by another module?); ignored, keeping the last good lists"
                ),
            ));
        }
    }

    /// Takes, renews, hands over or leaves the lease (the decisions are `lease`'s).
    fn lease(
        &mut self,
        now: u64,
        serves: bool,
        lease: &Opened<Lease>,
        seen: &Seen,
        out: &mut Vec<Action>,
    ) {
        if lease.is_forged() {
            self.forged(now, "the lease", out);
        }
        let vm = self.vm(serves);
        let idle_key = self.idle_key();
        let idle = Opened::of(
            &self.seal,
            &idle_key,
            seen.idle.as_ref().map(|(b, _)| &b[..]),
            lease_of,
        )
        .genuine();
        if lease::announces_idle(now, &vm, idle) {
            let value = self.sealed_lease(&idle_key, lease::held(now, self.token));
            out.push(Action::Write {
                key: idle_key,
                value,
                cas: 0,
                lease: None,
            });
        }
        let idle_other = lease::idle_other(now, &vm, idle);
        let key = self.lease_key();
        let cas = seen.lease.as_ref().map_or(0, |(_, c)| *c);
        let write = |value: Vec<u8>, op: LeaseOp| Action::Write {
            key: key.clone(),
            value,
            cas,
            lease: Some(op),
        };
        match lease::step(now, &vm, lease.clone().genuine(), idle_other) {
            Step::Renew { start } => {
                let value = self.sealed_lease(&key, lease::held(now, self.token));
                out.push(write(value, LeaseOp::Renew { start }));
            }
            Step::HandOver => out.push(write(Vec::new(), LeaseOp::HandOver)),
            Step::Take => {
                self.stop_fetching(out);
                let value = self.sealed_lease(&key, lease::held(now, self.token));
                out.push(write(value, LeaseOp::Take));
            }
            Step::Leave => self.stop_fetching(out),
        }
    }

    /// The outcome of a lease write.
    pub fn lease_written(&mut self, now: u64, op: LeaseOp, result: Written) -> Vec<Action> {
        let mut out = Vec::new();
        match (op, result) {
            (LeaseOp::Renew { start: true }, Written::Ok) if !self.alone => self.start(&mut out),
            (LeaseOp::Renew { .. }, Written::Ok) => {}
            (LeaseOp::Renew { .. }, e) => {
                out.push(Action::Log(
                    Level::Debug,
                    format!("lease renewal lost ({})", written_text(&e)),
                ));
                self.stop_fetching(&mut out);
            }
            (LeaseOp::HandOver, Written::Ok) => {
                out.push(Action::Log(
                    Level::Info,
                    "sources: handing the fetching over to a VM that serves no requests".into(),
                ));
                self.stop_fetching(&mut out);
            }
            (LeaseOp::Take, Written::Ok) => self.taken_ms = Some(now),
            (LeaseOp::Take, Written::Failed(e)) => {
                out.push(Action::Log(
                    Level::Debug,
                    format!("cannot take the lease: {e}"),
                ));
            }
            _ => {}
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        self.fetching = true;
        self.taken_ms = None;
        out.push(Action::Log(
            Level::Info,
            format!(
                "sources: this VM now fetches for this Envoy ({})",
                if self.serves {
                    "a worker: no VM without requests took over"
                } else {
                    "it serves no requests"
                }
            ),
        ));
        for f in &mut self.feeds {
            // Another VM may have fetched until now: go on from its last good time.
            f.schedule
                .resume(f.last_good_ms.filter(|_| f.list.is_some()));
            f.in_flight = None;
            f.pending = None;
        }
    }

    /// Stops fetching: a response to a request sent before is not used (never published late).
    fn stop_fetching(&mut self, out: &mut Vec<Action>) {
        if self.fetching {
            out.push(Action::Log(
                Level::Info,
                "sources: another VM fetches for this Envoy now".into(),
            ));
        }
        self.fetching = false;
        self.taken_ms = None;
        if !self.alone {
            self.drop_in_flight();
        }
    }

    fn drop_in_flight(&mut self) {
        for f in &mut self.feeds {
            f.in_flight = None;
            f.pending = None;
        }
    }

    /// Releases the lease (the VM is going away), given the lease as read now.
    pub fn release(&mut self, lease: &Shared) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.fetching && self.taken_ms.is_none() {
            return out;
        }
        let key = self.lease_key();
        if let Some((bytes, cas)) = lease {
            let mine = Opened::of(&self.seal, &key, Some(bytes), lease_of)
                .genuine()
                .is_some_and(|l| l.holder == self.token);
            if mine {
                out.push(Action::Write {
                    key,
                    value: Vec::new(),
                    cas: *cas,
                    lease: Some(LeaseOp::Release),
                });
            }
        }
        self.fetching = false;
        self.taken_ms = None;
        self.drop_in_flight();
        out
    }

    /// Follows source `i`'s published status: a newer genuine version is read; availability.
    fn poll(&mut self, i: usize, now: u64, status: Option<&[u8]>, out: &mut Vec<Action>) {
        let key = self.status_key(i);
        let status = Opened::of(&self.seal, &key, status, status_of);
        self.feeds[i].status_forged = status.is_forged();
        if status.is_forged() {
            self.forged(
                now,
                &format!("the status of source {}", self.sources[i].name),
                out,
            );
        }
        if let Opened::Genuine(status) = status {
            let f = &mut self.feeds[i];
            f.published = f.published.max(status.version);
            let retry = f.refused.is_none_or(|(v, t)| {
                v != status.version || now >= t.saturating_add(TABLE_RETRY_MS)
            });
            if status.version > f.version && retry {
                out.push(Action::ReadTable { source: i });
            }
            f.seen_good_ms = f.seen_good_ms.max(status.last_good());
            if f.list.is_some() {
                f.last_good_ms = f.last_good_ms.max(f.seen_good_ms);
            }
            if f.refused.is_some_and(|(v, _)| v <= f.version) {
                f.refused = None;
            }
        }
        self.follow_availability(i, now, out);
    }

    /// Whether source `i` is available now; a change rebinds (and a lapse is logged).
    fn follow_availability(&mut self, i: usize, now: u64, out: &mut Vec<Action>) {
        let source = &self.sources[i];
        let f = &mut self.feeds[i];
        let available =
            f.list.is_some() && schedule::available(now, f.last_good_ms, source.max_stale_s);
        if available != f.available {
            f.available = available;
            out.push(Action::Rebind);
            if !available && f.list.is_some() {
                // Every VM notices; the one that fetches says it (one line per Envoy).
                let level = if self.fetching {
                    Level::Warn
                } else {
                    Level::Debug
                };
                out.push(Action::Log(
                    level,
                    format!(
                        "source {}: unavailable: no good body for more than max_stale_s ({} s)",
                        source.name,
                        source.max_stale_s.unwrap_or(0)
                    ),
                ));
            }
        }
    }

    /// A published table read for [`Action::ReadTable`] (None: absent or unreadable).
    pub fn table(&mut self, i: usize, now: u64, bytes: Option<Vec<u8>>) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
            return out;
        };
        let name = self.sources[i].name.clone();
        let opened = self.seal.open_owned(&self.table_key(i), bytes);
        let decoded = opened.map(table::decode_owned);
        let f = &mut self.feeds[i];
        match decoded {
            Some(Ok(t)) if t.version > f.version => {
                out.push(Action::Log(
                    Level::Debug,
                    format!(
                        "source {name}: adopted version {} ({} entries)",
                        t.version, t.entries
                    ),
                ));
                f.version = t.version;
                f.etag = t.etag;
                f.last_modified = t.last_modified;
                f.list = Some(Rc::new(t.content));
                f.refused = None;
                f.last_good_ms = f.last_good_ms.max(f.seen_good_ms);
                out.push(Action::Rebind);
                self.follow_availability(i, now, &mut out);
            }
            // The status was written after the table: an older table is caught up next tick.
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                f.refused = Some((f.published, now));
                out.push(Action::Log(
                    Level::Warn,
                    format!("source {name}: published table refused ({e:?}); keeping the last good list"),
                ));
            }
            None => {
                f.refused = Some((f.published, now));
                self.forged(now, &format!("the table of source {name}"), &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
