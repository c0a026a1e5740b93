//! The host side of lists from a list server, for one configuration in one VM: it reads the
//! shared values the core's state machine (`source::machine`) asks for, feeds it the events
//! (ticks, responses, write outcomes) and performs the actions it returns — host calls only; every
//! decision (lease, schedule, acceptance, versions, integrity, logs) is the machine's.

use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hasher};

use log::{debug, info};

use crate::host::{HostError, SourceHost};
use client_ip_core::bind::{bind, SourcePlan};
use client_ip_core::policy::Policy;
use client_ip_core::source::machine::{
    Action, Counter, Gauge, Head, Level, Machine, Seen, SendError, Shared, SourceIo, Written,
};
use client_ip_core::source::retire::Retired;
use client_ip_core::source::Source;

/// How often a fetching VM looks at the retired configurations' leases.
const RETIRED_CHECK_MS: u64 = 5_000;

thread_local! {
    /// The configurations whose sources went away in this VM, until their values are emptied
    /// (`source::retire`). A VM is single-threaded: this is the VM's own list.
    static RETIRED: RefCell<Vec<Retired>> = const { RefCell::new(Vec::new()) };
    /// When this VM last looked at them (across configurations: under fast reconfiguration no
    /// configuration lives long enough to wait for them on its own).
    static RETIRED_CHECKED_MS: Cell<u64> = const { Cell::new(0) };
}

/// The tick while settling (see [`Machine::settling`]).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(super) const SETTLING_TICK_MS: u32 = 100;
/// `CasMismatch`.
const CAS_MISMATCH: u32 = 8;
/// `NotFound` (dispatch to an unknown cluster).
const NOT_FOUND: u32 = 2;

/// The metric ids of one source.
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
    fn define(host: &impl SourceHost, name: &str) -> FeedMetrics {
        let counter = |what: &str| {
            let full = format!("client_ip.source.{name}.{what}");
            host.define_counter(&full)
                .map_err(|e| debug!("cannot define {full}: {e:?}"))
                .ok()
        };
        let gauge = |what: &str| {
            let full = format!("client_ip.source.{name}.{what}");
            host.define_gauge(&full)
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

    fn counter(&self, c: Counter) -> Option<u32> {
        match c {
            Counter::FetchOk => self.fetch_ok,
            Counter::NotModified => self.not_modified,
            Counter::FetchFailed => self.fetch_failed,
            Counter::Rejected => self.rejected,
            Counter::SkippedLines => self.skipped_lines,
        }
    }

    fn gauge(&self, g: Gauge) -> Option<u32> {
        match g {
            Gauge::Entries => self.entries,
            Gauge::AgeS => self.age_s,
        }
    }
}

/// A random u64 (the standard library seeds its hasher keys from WASI `random_get`), mixed with
/// the clock.
fn random(now: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now);
    h.finish()
}

fn read(host: &impl SourceHost, key: &str) -> Shared {
    match host.shared_data(key) {
        Ok(v) => v,
        Err(e) => {
            debug!("cannot read {key}: {e:?}");
            None
        }
    }
}

/// The sources of one configuration in this VM, over the host `H` (Envoy's in the `.wasm`).
pub(super) struct Feeds<H: SourceHost> {
    host: H,
    machine: Machine,
    template: Policy,
    plan: SourcePlan,
    metrics: Vec<FeedMetrics>,
    /// The lists changed since the last [`Feeds::take_changed`].
    changed: bool,
}

impl<H: SourceHost> Drop for Feeds<H> {
    /// The configuration's sources go away in this VM: remember it, so that its shared values
    /// are emptied once no VM uses it.
    fn drop(&mut self) {
        let retired = self.machine.retired();
        RETIRED.with(|r| {
            let mut r = r.borrow_mut();
            if !r.iter().any(|x| x.prefix == retired.prefix) {
                r.push(retired);
            }
        });
    }
}

impl<H: SourceHost> Feeds<H> {
    /// The feeds of a configuration (`config` its bytes); None when no list names a source.
    pub(super) fn new(host: H, config: &[u8], template: Policy, plan: SourcePlan) -> Option<Self> {
        let now = host.now_ms().unwrap_or(0);
        let uses = plan.uses();
        let machine = Machine::new(config, uses, now, random(now))?;
        // The same configuration applied again is current, not retired.
        RETIRED.with(|r| r.borrow_mut().retain(|x| x.prefix != machine.prefix()));
        let metrics = (0..plan.sources.len())
            .map(|i| {
                if plan.is_used(i) {
                    FeedMetrics::define(&host, &plan.sources[i].name)
                } else {
                    FeedMetrics::default()
                }
            })
            .collect();
        Some(Feeds {
            host,
            machine,
            template,
            plan,
            metrics,
            changed: false,
        })
    }

    /// The policy bound to the sources' current lists.
    pub(super) fn policy(&self) -> Policy {
        bind(&self.template, &self.plan, &self.machine.lists())
    }

    /// The versions of the lists [`Feeds::policy`] binds now, as filter state
    /// `wasm.client_ip_lists` writes them: `name=version` per used source (`name=-` while
    /// unavailable), comma-separated (docs/sources.md).
    pub(super) fn versions(&self) -> String {
        self.machine.versions_text()
    }

    /// Whether this VM should tick fast (see [`Machine::settling`]).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(super) fn settling(&self) -> bool {
        self.machine
            .settling(self.host.now_ms().unwrap_or(u64::MAX))
    }

    /// Called at configure time (`configuring`: only adopts what is published) and on every
    /// tick. `serves` tells whether this VM has served a request. True when the policy must be
    /// bound again.
    pub(super) fn tick(&mut self, serves: bool, configuring: bool) -> bool {
        let Ok(now) = self.host.now_ms() else {
            return false;
        };
        let m = &self.machine;
        let status = (0..m.sources().len())
            .map(|i| {
                if m.is_used(i) {
                    read(&self.host, &m.status_key(i))
                } else {
                    None
                }
            })
            .collect();
        let seen = Seen {
            lease: if configuring {
                None
            } else {
                read(&self.host, &m.lease_key())
            },
            idle: if configuring {
                None
            } else {
                read(&self.host, &m.idle_key())
            },
            status,
        };
        let actions = self.machine.tick(now, serves, configuring, &seen);
        self.perform(actions);
        let due = RETIRED_CHECKED_MS.with(|t| now >= t.get().saturating_add(RETIRED_CHECK_MS));
        if self.machine.fetching() && due {
            RETIRED_CHECKED_MS.with(|t| t.set(now));
            self.empty_retired(now);
        }
        self.take_changed()
    }

    /// Empties the shared values of the retired configurations no VM uses any more.
    fn empty_retired(&self, now: u64) {
        let own = self.machine.prefix();
        let host = &self.host;
        RETIRED.with(|r| {
            r.borrow_mut().retain_mut(|retired| {
                if retired.prefix == own {
                    return false;
                }
                let lease = read(host, &retired.lease_key()).map(|(b, _)| b);
                let Some(keys) = retired.step(now, lease.as_deref()) else {
                    return true;
                };
                for key in &keys {
                    if let Err(e) = host.set_shared_data(key, &[], 0) {
                        debug!("cannot empty {key}: {e:?}");
                    }
                }
                info!(
                    "sources: emptied the shared lists of a replaced configuration ({})",
                    retired.prefix
                );
                false
            })
        });
    }

    /// The response to one of this VM's fetches. True when the policy changes.
    pub(super) fn response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        if self.machine.awaits(token).is_none() {
            return false;
        }
        let now = self.host.now_ms().unwrap_or(0);
        let head = if num_headers == 0 {
            Head::None
        } else {
            match self.host.http_call_response_headers() {
                Ok(headers) => {
                    let header = |name: &str| {
                        headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.clone())
                    };
                    Head::Headers {
                        status: header(":status").unwrap_or_default(),
                        etag: header("etag"),
                        last_modified: header("last-modified"),
                        body_size,
                    }
                }
                Err(e) => Head::Unreadable(format!("{e:?}")),
            }
        };
        let actions = self.machine.response(token, now, head);
        self.perform(actions);
        self.take_changed()
    }

    /// Releases the lease (the VM is going away), so that another VM takes over at once.
    pub(super) fn release(&mut self) {
        let lease = read(&self.host, &self.machine.lease_key());
        let actions = self.machine.release(&lease);
        self.perform(actions);
    }

    fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Performs the machine's actions, and those its answers to their outcomes bring
    /// ([`Machine::perform`]), through the host.
    fn perform(&mut self, actions: Vec<Action>) {
        let mut io = Io {
            host: &self.host,
            metrics: &self.metrics,
            changed: &mut self.changed,
        };
        self.machine.perform(actions, &mut io);
    }
}

/// The host calls of the machine's actions ([`SourceIo`]), for one configuration's feeds.
struct Io<'a, H> {
    host: &'a H,
    metrics: &'a [FeedMetrics],
    changed: &'a mut bool,
}

impl<H: SourceHost> SourceIo for Io<'_, H> {
    fn now_ms(&mut self) -> u64 {
        self.host.now_ms().unwrap_or(0)
    }

    fn send(&mut self, s: &Source, headers: &[(String, String)]) -> Result<u32, SendError> {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.host
            .dispatch_get(&s.cluster, &s.authority, &s.path, &headers, s.timeout_ms)
            .map_err(|e| match e {
                HostError(NOT_FOUND) => SendError::UnknownCluster,
                e => SendError::Other(format!("{e:?}")),
            })
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Written {
        match self.host.set_shared_data(key, value, cas) {
            Ok(()) => Written::Ok,
            Err(HostError(CAS_MISMATCH)) => Written::CasMismatch,
            Err(e) => Written::Failed(format!("{e:?}")),
        }
    }

    fn read(&mut self, key: &str) -> Shared {
        read(self.host, key)
    }

    fn body(&mut self, size: usize) -> Result<Vec<u8>, String> {
        self.host
            .http_call_response_body(size)
            .map_err(|e| format!("{e:?}"))
    }

    fn count(&mut self, source: usize, counter: Counter, n: u64) {
        if let Some(id) = self.metrics[source].counter(counter) {
            if n > 0 {
                let _ = self.host.increment_metric(id, n as i64);
            }
        }
    }

    fn gauge(&mut self, source: usize, gauge: Gauge, value: u64) {
        if let Some(id) = self.metrics[source].gauge(gauge) {
            let _ = self.host.record_metric(id, value);
        }
    }

    fn log(&mut self, level: Level, line: &str) {
        log::log!(level.into(), "{line}");
    }

    fn rebind(&mut self) {
        *self.changed = true;
    }
}
