//! The fetch cycle's rules ("lists from a list server"), each a test: VMs are machines driven
//! over a simulated shared-data store (with Envoy's compare-and-swap) and a simulated list server.

use std::collections::HashMap;

use super::*;
use crate::access::Verdict;
use crate::config::parse_sourced;
use crate::policy::{Downstream, Request};
use crate::source::lease::{CONFIRM_MS, GRACE_MS};
use crate::source::schedule::FIRST_RETRY_MS;
use crate::testutil::head;

/// Envoy's shared data: values with a compare-and-swap token each.
#[derive(Default)]
struct Store {
    map: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
}

impl Store {
    fn get(&self, key: &str) -> Shared {
        self.map.get(key).cloned()
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Written {
        if let Some((_, current)) = self.map.get(key) {
            if cas != 0 && cas != *current {
                return Written::CasMismatch;
            }
        }
        self.next_cas += 1;
        self.map
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
        Written::Ok
    }
}

/// A request sent: its token, source name and headers.
type Sent = (u32, String, Vec<(String, String)>);

/// One VM: its machine and what the adapter would have done.
struct Vm {
    m: Machine,
    template: crate::policy::Policy,
    plan: crate::bind::SourcePlan,
    serves: bool,
    /// Requests sent: (token, source name, headers).
    sent: Vec<Sent>,
    logs: Vec<(Level, String)>,
    counts: HashMap<(usize, Counter), u64>,
    gauges: HashMap<(usize, Gauge), u64>,
    rebinds: usize,
    published: usize,
}

const CONFIG: &str = r#"{"sources": {"feed": {"cluster": "lists", "authority": "lists.example",
    "path": "/feed.txt", "refresh_s": 60, "max_bytes": 1000, "max_stale_s": 600,
    "on_unavailable": "refuse"}},
    "access": {"deny": ["source:feed"]}}"#;

const TRUSTED: &str = r#"{"sources": {"cdn": {"cluster": "lists", "authority": "lists.example",
    "path": "/cdn.txt"}},
    "client_ip": {"trusted_proxies": ["source:cdn"]}}"#;

static NEXT_TOKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl Vm {
    fn new(config: &str, serves: bool, now: u64, seed: u64) -> Vm {
        let (policy, plan, _) = parse_sourced(config.as_bytes()).unwrap();
        let uses = plan.uses();
        Vm {
            m: Machine::new(config.as_bytes(), uses, now, seed).unwrap(),
            template: policy,
            plan,
            serves,
            sent: Vec::new(),
            logs: Vec::new(),
            counts: HashMap::new(),
            gauges: HashMap::new(),
            rebinds: 0,
            published: 0,
        }
    }

    fn seen(&self, store: &Store) -> Seen {
        Seen {
            lease: store.get(&self.m.lease_key()),
            idle: store.get(&self.m.idle_key()),
            status: (0..self.m.sources().len())
                .map(|i| store.get(&self.m.status_key(i)))
                .collect(),
        }
    }

    fn tick(&mut self, store: &mut Store, now: u64) {
        let actions = self.m.tick(now, self.serves, false, &self.seen(store));
        self.perform(store, now, actions, None);
    }

    /// Ticks every `step` ms after `from` until a request is out; the time it went out.
    fn tick_until_sent(&mut self, store: &mut Store, from: u64, step: u64) -> u64 {
        let mut now = from;
        while self.sent.is_empty() {
            now += step;
            self.tick(store, now);
        }
        now
    }

    /// Answers the oldest request not answered yet with `head` and `body`.
    fn respond(&mut self, store: &mut Store, now: u64, head: Head, body: &[u8]) {
        let (token, _, _) = self.sent.remove(0);
        let actions = self.m.response(token, now, head);
        self.perform(store, now, actions, Some(body));
    }

    fn ok(&mut self, store: &mut Store, now: u64, body: &str) {
        self.respond(store, now, ok_head(body.len(), None), body.as_bytes());
    }

    fn perform(&mut self, store: &mut Store, now: u64, actions: Vec<Action>, body: Option<&[u8]>) {
        let Vm {
            m,
            sent,
            logs,
            counts,
            gauges,
            rebinds,
            published,
            ..
        } = self;
        let mut io = VmIo {
            store,
            now,
            body,
            sent,
            logs,
            counts,
            gauges,
            rebinds,
            published,
        };
        m.perform(actions, &mut io);
    }

    fn count(&self, c: Counter) -> u64 {
        self.counts.get(&(0, c)).copied().unwrap_or(0)
    }

    fn warnings(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .map(|(_, s)| s.as_str())
            .collect()
    }

    /// The verdict for `client` under the current lists (and whether a list was unavailable).
    fn verdict(&self, client: &str) -> (Verdict, bool) {
        let policy = crate::bind::bind(&self.template, &self.plan, &self.m.lists());
        crate::testutil::verdict(&policy, client)
    }
}

/// What one VM's adapter does for its machine: the simulated store and list server, and a
/// record of the rest.
struct VmIo<'a> {
    store: &'a mut Store,
    now: u64,
    body: Option<&'a [u8]>,
    sent: &'a mut Vec<Sent>,
    logs: &'a mut Vec<(Level, String)>,
    counts: &'a mut HashMap<(usize, Counter), u64>,
    gauges: &'a mut HashMap<(usize, Gauge), u64>,
    rebinds: &'a mut usize,
    published: &'a mut usize,
}

impl SourceIo for VmIo<'_> {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn send(&mut self, source: &Source, headers: &[(String, String)]) -> Result<u32, SendError> {
        let token = NEXT_TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sent
            .push((token, source.name.clone(), headers.to_vec()));
        Ok(token)
    }

    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Written {
        if key.ends_with(".table") {
            *self.published += 1;
        }
        self.store.set(key, value, cas)
    }

    fn read(&mut self, key: &str) -> Shared {
        self.store.get(key)
    }

    fn body(&mut self, _size: usize) -> Result<Vec<u8>, String> {
        Ok(self.body.expect("a body only for a response").to_vec())
    }

    fn count(&mut self, source: usize, counter: Counter, n: u64) {
        *self.counts.entry((source, counter)).or_default() += n;
    }

    fn gauge(&mut self, source: usize, gauge: Gauge, value: u64) {
        self.gauges.insert((source, gauge), value);
    }

    fn log(&mut self, level: Level, line: &str) {
        self.logs.push((level, line.to_string()));
    }

    fn rebind(&mut self) {
        *self.rebinds += 1;
    }
}

fn ok_head(size: usize, etag: Option<&str>) -> Head {
    head("200", size, etag)
}

const T0: u64 = 1_700_000_000_000;

/// A VM serving no requests (the main thread's), ticked until it fetches; its first request out.
fn fetcher(store: &mut Store, config: &str) -> (Vm, u64) {
    let mut vm = Vm::new(config, false, T0, 11);
    let mut now = T0;
    while vm.sent.is_empty() {
        now += 100;
        vm.tick(store, now);
        assert!(now < T0 + 2_000, "no fetch within 2 s");
    }
    (vm, now)
}

#[test]
fn the_first_fetch_is_sent_once_the_lease_is_confirmed_a_tick_later() {
    let mut store = Store::default();
    let mut vm = Vm::new(CONFIG, false, T0, 11);
    vm.tick(&mut store, T0 + 100);
    assert!(vm.sent.is_empty(), "lease taken, not yet confirmed");
    vm.tick(&mut store, T0 + 100 + CONFIRM_MS);
    vm.tick(&mut store, T0 + 200 + CONFIRM_MS);
    assert_eq!(vm.sent.len(), 1);
    assert!(vm.m.fetching());
    let (_, _, headers) = &vm.sent[0];
    assert_eq!(headers, &[("user-agent".into(), "client-ip-filter".into())]);
}

#[test]
fn one_fetch_per_envoy_however_many_vms_and_every_vm_adopts_the_published_list() {
    let mut store = Store::default();
    let mut vms: Vec<Vm> = (0..4)
        .map(|k| Vm::new(CONFIG, k > 0, T0, 101 + 2 * k as u64))
        .collect();
    let mut now = T0;
    for _ in 0..40 {
        now += 100;
        for vm in &mut vms {
            vm.tick(&mut store, now);
        }
    }
    let senders: Vec<usize> = (0..4).filter(|&k| !vms[k].sent.is_empty()).collect();
    assert_eq!(senders, [0], "only the VM serving no requests fetches");
    assert_eq!(vms[0].sent.len(), 1);
    vms[0].ok(&mut store, now, "192.0.2.66\n");
    assert_eq!(vms[0].published, 1);
    now += 100;
    for vm in &mut vms {
        vm.tick(&mut store, now);
        assert_eq!(vm.verdict("192.0.2.66").0, Verdict::Deny);
        assert_eq!(vm.verdict("192.0.2.67").0, Verdict::Allow);
    }
    // A refresh later: still one request for the whole Envoy.
    while now < T0 + 4_000 + 60_000 {
        now += 250;
        for vm in &mut vms {
            vm.tick(&mut store, now);
        }
    }
    let total: usize = vms.iter().map(|vm| vm.sent.len()).sum();
    assert_eq!(total, 1, "one request per refresh");
}

#[test]
fn refresh_is_every_refresh_s_brought_forward_by_at_most_10_percent() {
    for seed in [1, 2, 3, 4, 5, 6, 7, 8] {
        let mut store = Store::default();
        let (mut vm, t) = fetcher(&mut store, CONFIG);
        let _ = seed;
        vm.m.rng = (seed * 0x9e37_79b9) | 1;
        vm.ok(&mut store, t, "192.0.2.66\n");
        let mut now = t;
        now = vm.tick_until_sent(&mut store, now, 100);
        let delay = now - t;
        assert!(
            (54_000..=60_100).contains(&delay),
            "refresh after {delay} ms (refresh_s 60, jitter at most 10%)"
        );
    }
}

#[test]
fn a_database_that_never_arrives_says_a_city_database_does_not_fit() {
    // Envoy drops a response over 32 MiB before the filter sees it: a city database arrives as no
    // response at all, so the warning of an mmdb source names that reason (docs/geo.md).
    let geo = r#"{"sources": {"city": {"cluster": "geo", "authority": "geo.example",
        "path": "/city.mmdb", "format": "mmdb", "country_field": "country.iso_code"}},
        "geo": {"country": "city"}, "access": {"deny": ["country:KP"]}}"#;
    let mut store = Store::default();
    let (mut vm, now) = fetcher(&mut store, geo);
    vm.respond(&mut store, now, Head::None, b"");
    assert_eq!(vm.count(Counter::FetchFailed), 1);
    let warnings = vm.warnings();
    assert!(
        warnings.len() == 1 && warnings[0].contains("a city database does not fit"),
        "{warnings:?}"
    );
    // A list of another format keeps the plain reason.
    let mut store = Store::default();
    let (mut vm, now) = fetcher(&mut store, CONFIG);
    vm.respond(&mut store, now, Head::None, b"");
    assert!(!vm.warnings()[0].contains("city"), "{:?}", vm.warnings());
}

#[test]
fn after_a_failure_the_fetch_is_retried_sooner_backing_off() {
    let mut store = Store::default();
    let (mut vm, mut now) = fetcher(&mut store, CONFIG);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let failed_at = now;
        vm.respond(&mut store, now, Head::None, b"");
        now = vm.tick_until_sent(&mut store, now, 100);
        delays.push((now - failed_at) / 100 * 100);
    }
    assert_eq!(
        delays,
        [FIRST_RETRY_MS, 2 * FIRST_RETRY_MS, 4 * FIRST_RETRY_MS]
    );
    assert_eq!(vm.count(Counter::FetchFailed), 3);
    let failing: Vec<_> = vm.warnings();
    assert_eq!(
        failing.len(),
        1,
        "one warning when it starts failing: {failing:?}"
    );
}

#[test]
fn conditional_headers_are_sent_when_the_last_good_response_carried_validators() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    let body = "192.0.2.66\n";
    let head = Head::Headers {
        status: "200".into(),
        etag: Some("\"v1\"".into()),
        last_modified: Some("Mon, 30 Nov 2026 10:00:00 GMT".into()),
        body_size: body.len(),
    };
    vm.respond(&mut store, t, head, body.as_bytes());
    vm.tick_until_sent(&mut store, t, 1_000);
    let (_, _, headers) = &vm.sent[0];
    assert!(headers.contains(&("if-none-match".into(), "\"v1\"".into())));
    assert!(headers.contains(&(
        "if-modified-since".into(),
        "Mon, 30 Nov 2026 10:00:00 GMT".into()
    )));
}

#[test]
fn a_304_keeps_the_list_and_renews_its_age() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let now = vm.tick_until_sent(&mut store, t, 1_000);
    let head = head("304", 0, None);
    vm.respond(&mut store, now, head, b"");
    assert_eq!(vm.count(Counter::NotModified), 1);
    assert_eq!(vm.gauges[&(0, Gauge::AgeS)], 0);
    assert_eq!(vm.verdict("192.0.2.66").0, Verdict::Deny, "the list stays");
    // Another VM sees the age renewed through the status.
    let mut other = Vm::new(CONFIG, true, now, 5);
    other.tick(&mut store, now + 100);
    assert_eq!(other.m.feeds[0].last_good_ms, Some(now));
}

#[test]
fn a_304_before_any_list_is_a_failure() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    let head = head("304", 0, None);
    vm.respond(&mut store, t, head, b"");
    assert_eq!(vm.count(Counter::FetchFailed), 1);
}

#[test]
fn only_status_200_is_accepted_and_a_body_over_max_bytes_is_never_read() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    let head = head("500", 5, None);
    vm.respond(&mut store, t, head, b"");
    assert_eq!(vm.count(Counter::FetchFailed), 1);
    let now = vm.tick_until_sent(&mut store, t, 100);
    let token = vm.sent.remove(0).0;
    let actions = vm.m.response(token, now, ok_head(1001, None));
    assert!(
        !actions.iter().any(|a| matches!(a, Action::ReadBody { .. })),
        "max_bytes 1000: the body is not read"
    );
    vm.perform(&mut store, now, actions, None);
    assert_eq!(vm.count(Counter::Rejected), 1);
}

#[test]
fn a_rejected_body_keeps_the_last_good_list_and_is_one_warning_with_its_reason() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let now = vm.tick_until_sent(&mut store, t, 1_000);
    vm.ok(&mut store, now, "0.0.0.0/0\n");
    assert_eq!(vm.count(Counter::Rejected), 1);
    assert_eq!(vm.verdict("192.0.2.66").0, Verdict::Deny);
    assert_eq!(
        vm.verdict("198.51.100.1").0,
        Verdict::Allow,
        "no /0 adopted"
    );
    let w = vm.warnings();
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("body rejected") && w[0].contains("0.0.0.0/0"),
        "{w:?}"
    );
    assert_eq!(vm.published, 1, "nothing published for a rejected body");
}

#[test]
fn a_trusted_proxies_source_rejects_a_body_broader_than_min_prefix() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, TRUSTED);
    vm.ok(&mut store, t, "10.0.0.0/7\n");
    assert_eq!(vm.count(Counter::Rejected), 1);
    assert!(vm.warnings()[0].contains("min_prefix.ipv4 (/8)"));
    // The same body for a deny list is accepted (min_prefix applies to trusted proxies only).
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "10.0.0.0/7\n");
    assert_eq!(vm.count(Counter::FetchOk), 1);
}

#[test]
fn a_source_is_unavailable_before_its_first_good_body_and_on_unavailable_refuse_refuses() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    assert_eq!(vm.verdict("198.51.100.1"), (Verdict::Deny, true));
    vm.ok(&mut store, t, "192.0.2.66\n");
    assert_eq!(vm.verdict("198.51.100.1"), (Verdict::Allow, false));
}

#[test]
fn max_stale_s_without_a_good_body_makes_the_source_unavailable_until_one_arrives() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let mut now = t;
    while now <= t + 600_000 {
        now += 1_000;
        vm.tick(&mut store, now);
        if !vm.sent.is_empty() {
            vm.respond(&mut store, now, Head::None, b"");
        }
    }
    assert_eq!(vm.verdict("198.51.100.1"), (Verdict::Deny, true), "stale");
    assert!(vm
        .warnings()
        .iter()
        .any(|w| w.contains("max_stale_s (600 s)")));
    now = vm.tick_until_sent(&mut store, now, 1_000);
    vm.ok(&mut store, now, "192.0.2.66\n");
    assert_eq!(vm.verdict("198.51.100.1"), (Verdict::Allow, false));
}

#[test]
fn a_vm_that_loses_the_lease_drops_its_fetch_and_never_publishes_the_late_response() {
    let mut store = Store::default();
    let (mut vm, now) = fetcher(&mut store, CONFIG);
    // Another VM of the configuration took the lease meanwhile (this VM stalled past it).
    let mut other = Vm::new(CONFIG, false, now, 77);
    let later = now + 6_000;
    other.tick(&mut store, later);
    assert!(other.m.taken_ms.is_some());
    vm.ok(&mut store, later, "192.0.2.66\n");
    assert_eq!(vm.published, 0, "the late response is not published");
    assert!(!vm.m.fetching());
    assert!(vm.m.feeds[0].in_flight.is_none());
    // A response to a request the VM no longer awaits is ignored.
    let mut vm2 = fetcher(&mut Store::default(), CONFIG).0;
    let token = vm2.sent[0].0;
    vm2.m.stop_fetching(&mut Vec::new());
    assert!(vm2.m.response(token, later, ok_head(5, None)).is_empty());
}

// ----- Another module writing our keys: nothing it writes changes a decision. -----

fn hostile_writes(store: &mut Store, vm: &Vm) {
    let garbage = [0xffu8; 32];
    let (mut status_max, mut lease) = (Vec::new(), Vec::new());
    status_max.extend_from_slice(&u64::MAX.to_le_bytes());
    status_max.extend_from_slice(&u64::MAX.to_le_bytes());
    status_max.extend_from_slice(&1u64.to_le_bytes());
    lease.extend_from_slice(&42u64.to_le_bytes());
    lease.extend_from_slice(&u64::MAX.to_le_bytes());
    // A /0 table in the right layout (with a valid checksum), but not sealed.
    let set = crate::ipset::IpSet::from_nets(["0.0.0.0/0".parse::<ipnet::IpNet>().unwrap()]);
    let table = table::encode(&Table {
        version: u64::MAX,
        entries: 1,
        etag: None,
        last_modified: None,
        content: table::Content::Set(set),
    });
    store.set(&vm.m.table_key(0), &table, 0);
    store.set(&vm.m.status_key(0), &status_max, 0);
    store.set(&vm.m.lease_key(), &lease, 0);
    store.set(&vm.m.idle_key(), &garbage, 0);
}

#[test]
fn a_forged_table_status_and_lease_change_no_decision() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let mut worker = Vm::new(CONFIG, true, t, 9);
    worker.tick(&mut store, t + 100);
    hostile_writes(&mut store, &vm);
    for k in 1..20 {
        vm.tick(&mut store, t + 100 + k * 250);
        worker.tick(&mut store, t + 100 + k * 250);
    }
    for v in [&vm, &worker] {
        assert_eq!(v.verdict("192.0.2.66").0, Verdict::Deny);
        assert_eq!(v.verdict("198.51.100.1").0, Verdict::Allow, "no /0 adopted");
    }
    let forged: Vec<_> = worker
        .warnings()
        .into_iter()
        .filter(|w| w.contains("seal"))
        .collect();
    assert_eq!(forged.len(), 1, "logged once: {forged:?}");
    assert!(
        vm.m.fetching(),
        "a forged lease is no lease: the VM took it back"
    );
}

#[test]
fn a_status_version_of_u64_max_does_not_stop_versions_advancing() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    hostile_writes(&mut store, &vm);
    // The forged lease is no lease: the fetcher takes it again (its request is dropped).
    let mut now = t;
    vm.sent.clear();
    now = vm.tick_until_sent(&mut store, now, 100);
    vm.ok(&mut store, now, "192.0.2.66\n");
    let mut worker = Vm::new(CONFIG, true, now, 9);
    worker.tick(&mut store, now + 100);
    assert_eq!(worker.verdict("192.0.2.66").0, Verdict::Deny, "adopted");
    assert_eq!(worker.m.feeds[0].version, 1);
}

#[test]
fn a_version_that_cannot_advance_publishes_nothing() {
    // Only a writer that knows the configuration could seal such a status.
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    let key = vm.m.status_key(0);
    let status = Status {
        version: u64::MAX,
        last_good_ms: t,
        entries: 1,
    };
    store.set(&key, &vm.m.seal.seal(&key, status.encode()), 0);
    vm.tick(&mut store, t + 100);
    vm.ok(&mut store, t + 100, "192.0.2.66\n");
    assert_eq!(vm.published, 0);
    assert!(vm.warnings().iter().any(|w| w.contains("cannot advance")));
    assert_eq!(vm.verdict("192.0.2.66").0, Verdict::Deny, "kept locally");
}

#[test]
fn a_replayed_older_table_is_not_adopted() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let old_table = store.get(&vm.m.table_key(0)).unwrap().0;
    let old_status = store.get(&vm.m.status_key(0)).unwrap().0;
    let now = vm.tick_until_sent(&mut store, t, 1_000);
    vm.ok(&mut store, now, "192.0.2.77\n");
    let mut worker = Vm::new(CONFIG, true, now, 9);
    worker.tick(&mut store, now + 100);
    assert_eq!(worker.verdict("192.0.2.77").0, Verdict::Deny);
    store.set(&vm.m.table_key(0), &old_table, 0);
    store.set(&vm.m.status_key(0), &old_status, 0);
    worker.tick(&mut store, now + 200);
    assert_eq!(worker.verdict("192.0.2.77").0, Verdict::Deny, "still v2");
    assert_eq!(worker.verdict("192.0.2.66").0, Verdict::Allow);
}

#[test]
fn a_module_that_overwrites_the_lease_every_tick_cannot_freeze_the_lists() {
    let mut store = Store::default();
    let (mut vm, t) = fetcher(&mut store, CONFIG);
    vm.ok(&mut store, t, "192.0.2.66\n");
    let mut worker = Vm::new(CONFIG, true, t, 9);
    let mut now = t;
    let mut fetched_alone = false;
    while now < t + 120_000 {
        now += 250;
        // The hostile module writes before each of our ticks.
        store.set(&vm.m.lease_key(), b"held by someone else", 0);
        vm.tick(&mut store, now);
        store.set(&vm.m.lease_key(), b"held by someone else", 0);
        worker.tick(&mut store, now);
        for v in [&mut vm, &mut worker] {
            if !v.sent.is_empty() {
                assert!(v.m.alone());
                fetched_alone = true;
                v.ok(&mut store, now, "192.0.2.88\n");
            }
        }
    }
    assert!(fetched_alone);
    for v in [&vm, &worker] {
        assert_eq!(
            v.verdict("192.0.2.88").0,
            Verdict::Deny,
            "the new list arrived"
        );
        assert!(v
            .warnings()
            .iter()
            .any(|w| w.contains("fetches its lists itself")));
    }
    // Once the module stops, the VMs share one fetch again.
    let before = vm.published;
    for _ in 0..100 {
        now += 250;
        vm.tick(&mut store, now);
        worker.tick(&mut store, now);
    }
    assert!(!vm.m.alone() && !worker.m.alone());
    assert!(vm.m.fetching() ^ worker.m.fetching());
    assert_eq!(vm.published, before);
}

#[test]
fn a_worker_takes_a_free_lease_only_after_the_grace() {
    let mut store = Store::default();
    let mut worker = Vm::new(CONFIG, true, T0, 3);
    let mut now = T0;
    while worker.m.taken_ms.is_none() {
        now += 100;
        worker.tick(&mut store, now);
    }
    assert!(now > T0 + GRACE_MS);
}

const GEO_CONFIG: &str = r#"{"sources": {"countries": {"cluster": "geo", "authority": "geo.internal",
    "path": "/country.mmdb", "format": "mmdb", "country_field": "country.iso_code",
    "refresh_s": 60, "on_unavailable": "refuse"}},
    "geo": {"country": "countries"},
    "access": {"deny": ["country:KP"]},
    "forward": {"country_header": "x-client-country"}}"#;

#[test]
fn an_mmdb_body_is_read_once_published_and_every_worker_decides_and_labels_by_its_countries() {
    use crate::source::mmdb_tests::{database, V};
    let country = |c: &str| {
        V::Map(vec![(
            "country",
            V::Map(vec![("iso_code", V::Str(c.into()))]),
        )])
    };
    let db = database(
        &[("1.2.3.0", 24, 0), ("5.6.0.0", 16, 1)],
        &[country("KP"), country("DE")],
        4,
        28,
    );
    let mut store = Store::default();
    let mut fetcher_vm = Vm::new(GEO_CONFIG, false, T0, 11);
    let mut worker = Vm::new(GEO_CONFIG, true, T0, 13);
    let mut now = T0;
    while fetcher_vm.sent.is_empty() {
        now += 100;
        fetcher_vm.tick(&mut store, now);
        worker.tick(&mut store, now);
        assert!(now < T0 + 2_000, "no fetch within 2 s");
    }
    assert_eq!(
        worker.verdict("5.6.7.8"),
        (Verdict::Deny, true),
        "refuse before the first file"
    );
    fetcher_vm.respond(&mut store, now, ok_head(db.len(), None), &db);
    assert_eq!(fetcher_vm.published, 1);
    now += 100;
    worker.tick(&mut store, now);
    assert!(
        worker.sent.is_empty(),
        "the worker never fetches nor parses"
    );
    assert_eq!(worker.verdict("1.2.3.4"), (Verdict::Deny, false));
    assert_eq!(worker.verdict("5.6.7.8"), (Verdict::Allow, false));
    assert_eq!(worker.verdict("[::ffff:1.2.3.9]").0, Verdict::Deny);
    let header = |vm: &Vm, client: &str| {
        let policy = crate::bind::bind(&vm.template, &vm.plan, &vm.m.lists());
        let headers = Vec::new();
        let request = Request {
            downstream: Downstream::from_filter_state(&format!("{client}:1000")),
            headers: &headers,
        };
        let d = policy.decide(&request);
        policy
            .header_plan(&request, &d)
            .to_vec()
            .into_iter()
            .find(|(name, v)| name == "x-client-country" && v.is_some())
            .and_then(|(_, v)| v)
    };
    assert_eq!(header(&worker, "5.6.7.8").as_deref(), Some("DE"));
    assert_eq!(header(&worker, "9.9.9.9"), None);
    // A truncated file is refused with its reason; every VM keeps the last good table.
    while fetcher_vm.sent.is_empty() {
        now += 1_000;
        fetcher_vm.tick(&mut store, now);
        worker.tick(&mut store, now);
    }
    let cut = &db[..db.len() - 30];
    fetcher_vm.respond(&mut store, now, ok_head(cut.len(), None), cut);
    assert_eq!(fetcher_vm.count(Counter::Rejected), 1);
    assert!(
        fetcher_vm
            .warnings()
            .iter()
            .any(|w| w.contains("not a usable MaxMind DB")),
        "{:?}",
        fetcher_vm.warnings()
    );
    now += 100;
    worker.tick(&mut store, now);
    for vm in [&fetcher_vm, &worker] {
        assert_eq!(vm.verdict("1.2.3.4"), (Verdict::Deny, false));
        assert_eq!(header(vm, "5.6.7.8").as_deref(), Some("DE"));
    }
}

#[test]
fn a_shared_write_that_fails_outside_a_lease_is_warned_about_and_one_that_succeeds_is_not() {
    let mut store = Store::default();
    let mut vm = Vm::new(CONFIG, true, T0, 21);
    store.set("k", b"first", 0);
    let write = |cas| Action::Write {
        key: "k".into(),
        value: b"second".to_vec(),
        cas,
        lease: None,
    };
    vm.perform(&mut store, T0, vec![write(99)], None);
    assert_eq!(
        vm.warnings(),
        ["sources: cannot write k to shared data (another write came first)"]
    );
    assert_eq!(store.get("k").unwrap().0, b"first");
    vm.perform(&mut store, T0, vec![write(0)], None);
    assert_eq!(
        vm.warnings().len(),
        1,
        "a write that succeeds is not warned about"
    );
    assert_eq!(store.get("k").unwrap().0, b"second");
}
