//! The sources' adapter (`sources::Feeds`) against a fake host: Envoy's shared data with its
//! compare-and-swap (a conflict can be made to land between a read and a write), a clock and a
//! list server whose responses the test delivers when it chooses. These are the paths Envoy
//! cannot be made to take on request (a compare-and-swap lost to another VM) or only with
//! timing luck (a reconfiguration while a fetch is in flight); each test names the path and
//! what the filter must do on it.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use super::sources::Feeds;
use crate::host::{HostError, SourceHost};
use client_ip_core::access::Verdict;
use client_ip_core::config;
use client_ip_core::policy::{Downstream, Request};
use client_ip_core::testutil::headers;

/// `CasMismatch`.
const CAS_MISMATCH: HostError = HostError(8);

/// Envoy's shared data: a value and a CAS token per key (Envoy's rule: a write with a token
/// other than 0 fails when the key holds a different one).
#[derive(Default)]
struct Store {
    values: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    /// On the next conditional write, another VM's write to the same key lands first.
    conflict_next_conditional: bool,
    /// While set, reads see this earlier state: VMs ticking at the same instant on different
    /// threads all read before any of them writes.
    frozen: Option<HashMap<String, (Vec<u8>, u32)>>,
    /// Every write: key, value length, cas asked, whether it landed.
    writes: Vec<(String, usize, u32, bool)>,
}

impl Store {
    fn put(&mut self, key: &str, value: &[u8]) {
        self.next_cas += 1;
        self.values
            .insert(key.to_string(), (value.to_vec(), self.next_cas));
    }

    fn set(&mut self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        if cas != 0 && std::mem::take(&mut self.conflict_next_conditional) {
            self.put(key, b"another VM's write");
        }
        let landed =
            !matches!(self.values.get(key), Some((_, current)) if cas != 0 && cas != *current);
        self.writes
            .push((key.to_string(), value.len(), cas, landed));
        if !landed {
            return Err(CAS_MISMATCH);
        }
        self.put(key, value);
        Ok(())
    }
}

/// A request sent to the list server: its token, path and the body the server held then.
struct Sent {
    token: u32,
    path: String,
    body: Vec<u8>,
}

/// A response being delivered: its headers and body.
type Response = (Vec<(String, String)>, Vec<u8>);

/// The list server: what it serves per path, the requests sent, and the response being
/// delivered (Envoy hands the adapter one response at a time).
#[derive(Default)]
struct Server {
    bodies: HashMap<String, Vec<u8>>,
    sent: Vec<Sent>,
    next_token: u32,
    delivering: Option<Response>,
    /// The tokens whose body the adapter read.
    bodies_read: Vec<u32>,
    delivering_token: u32,
}

/// One Envoy: the shared data and the clock are the process's, the list server is outside;
/// every VM's fake is a clone of it (the metrics too: Envoy's stats are per process).
#[derive(Clone, Default)]
struct Fake {
    store: Rc<RefCell<Store>>,
    server: Rc<RefCell<Server>>,
    clock: Rc<Cell<u64>>,
    metrics: Rc<RefCell<Vec<(String, i64)>>>,
}

impl SourceHost for Fake {
    fn now_ms(&self) -> Result<u64, HostError> {
        Ok(self.clock.get())
    }
    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        let store = self.store.borrow();
        Ok(store
            .frozen
            .as_ref()
            .unwrap_or(&store.values)
            .get(key)
            .cloned())
    }
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        self.store.borrow_mut().set(key, value, cas)
    }
    fn dispatch_get(
        &self,
        _cluster: &str,
        _authority: &str,
        path: &str,
        _headers: &[(&str, &str)],
        _timeout_ms: u32,
    ) -> Result<u32, HostError> {
        let mut server = self.server.borrow_mut();
        server.next_token += 1;
        let token = server.next_token;
        let body = server.bodies.get(path).cloned().unwrap_or_default();
        server.sent.push(Sent {
            token,
            path: path.to_string(),
            body,
        });
        Ok(token)
    }
    fn http_call_response_headers(&self) -> Result<Vec<(String, String)>, HostError> {
        Ok(self
            .server
            .borrow()
            .delivering
            .clone()
            .unwrap_or_default()
            .0)
    }
    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        let mut server = self.server.borrow_mut();
        let token = server.delivering_token;
        server.bodies_read.push(token);
        let body = server.delivering.clone().unwrap_or_default().1;
        Ok(body[..size.min(body.len())].to_vec())
    }
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        Ok(self.define(name))
    }
    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        Ok(self.define(name))
    }
    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError> {
        self.metrics.borrow_mut()[id as usize].1 += delta;
        Ok(())
    }
    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        self.metrics.borrow_mut()[id as usize].1 = value as i64;
        Ok(())
    }
}

impl Fake {
    fn define(&self, name: &str) -> u32 {
        let mut m = self.metrics.borrow_mut();
        if let Some(i) = m.iter().position(|(n, _)| n == name) {
            return i as u32;
        }
        m.push((name.to_string(), 0));
        (m.len() - 1) as u32
    }

    fn metric(&self, name: &str) -> i64 {
        self.metrics
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn serve(&self, path: &str, body: &str) {
        self.server
            .borrow_mut()
            .bodies
            .insert(path.to_string(), body.as_bytes().to_vec());
    }

    fn sent_paths(&self) -> Vec<String> {
        self.server
            .borrow()
            .sent
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    fn last_token(&self) -> u32 {
        self.server
            .borrow()
            .sent
            .last()
            .expect("a request sent")
            .token
    }

    /// Delivers the response to request `token`: `status`, with the body the server held when
    /// the request was sent (none for a 304). True when `feeds`' policy changed.
    fn respond(&self, feeds: &mut Feeds<Fake>, token: u32, status: &str) -> bool {
        let body = {
            let server = self.server.borrow();
            let sent = server.sent.iter().find(|s| s.token == token).expect("sent");
            if status == "200" {
                sent.body.clone()
            } else {
                Vec::new()
            }
        };
        let size = body.len();
        {
            let mut server = self.server.borrow_mut();
            server.delivering = Some((vec![(":status".into(), status.into())], body));
            server.delivering_token = token;
        }
        let changed = feeds.response(token, 1, size);
        self.server.borrow_mut().delivering = None;
        changed
    }

    /// Writes that landed on keys other than leases and idle announcements since `from`.
    fn list_writes_since(&self, from: usize) -> Vec<String> {
        self.store.borrow().writes[from..]
            .iter()
            .filter(|(k, _, _, landed)| *landed && !k.ends_with(".lease") && !k.ends_with(".idle"))
            .map(|(k, ..)| k.clone())
            .collect()
    }

    fn writes(&self) -> usize {
        self.store.borrow().writes.len()
    }
}

/// A VM of `fake`'s Envoy configured with `configuration` (as the root context does: the
/// configure-time tick only adopts what is published). `serves`: a worker's VM.
fn vm(fake: &Fake, configuration: &str) -> Feeds<Fake> {
    let bytes = configuration.as_bytes();
    let (policy, plan, _warnings) = config::parse_sourced(bytes).expect("a valid configuration");
    let mut feeds = Feeds::new(fake.clone(), bytes, policy, plan).expect("sources in use");
    feeds.tick(false, true);
    feeds
}

/// Ticks `feeds` every 100 ms (the settling tick) until `done`, for at most `seconds`.
fn tick_until(fake: &Fake, feeds: &mut Feeds<Fake>, seconds: u64, done: impl Fn(&Fake) -> bool) {
    for _ in 0..seconds * 10 {
        if done(fake) {
            return;
        }
        fake.clock.set(fake.clock.get() + 100);
        feeds.tick(false, false);
    }
    assert!(done(fake), "not reached within {seconds} s of ticks");
}

fn ticks(fake: &Fake, feeds: &mut Feeds<Fake>, seconds: u64) {
    for _ in 0..seconds * 10 {
        fake.clock.set(fake.clock.get() + 100);
        feeds.tick(false, false);
    }
}

const BIG: &str = r#"{"sources": {"big": {"cluster": "lists", "authority": "lists.test",
    "path": "/big.txt", "refresh_s": 10}},
  "access": {"deny": ["source:big"]}}"#;

fn fake() -> Fake {
    let fake = Fake::default();
    fake.clock.set(1_000_000);
    fake.serve("/big.txt", "192.0.2.1\n");
    fake
}

/// The verdict `feeds`' current policy gives a client connecting from `client`.
fn verdict(feeds: &Feeds<Fake>, client: &str) -> Verdict {
    let headers = headers(&[(":path", "/")]);
    let request = Request {
        downstream: Downstream::from_filter_state(&format!("{client}:5555")),
        headers: &headers,
    };
    feeds.policy().decide(&request).verdict
}

fn sent(fake: &Fake) -> usize {
    fake.server.borrow().sent.len()
}

#[test]
fn a_lease_renewal_lost_to_a_compare_and_swap_conflict_drops_the_fetch_in_flight() {
    let fake = fake();
    let mut a = vm(&fake, BIG);
    tick_until(&fake, &mut a, 5, |f| sent(f) == 1);
    let token = fake.last_token();
    // Another VM's lease write lands between this VM's read of the lease and its renewal.
    fake.store.borrow_mut().conflict_next_conditional = true;
    let before = fake.writes();
    fake.clock.set(fake.clock.get() + 100);
    a.tick(false, false);
    let renewal = fake.store.borrow().writes[before..]
        .iter()
        .find(|(k, ..)| k.ends_with(".lease"))
        .cloned()
        .expect("a renewal");
    assert!(!renewal.3, "the renewal must have met the conflict");
    // The response to the fetch sent while it held the lease arrives: not this VM's to publish.
    let from = fake.writes();
    assert!(!fake.respond(&mut a, token, "200"));
    assert_eq!(fake.list_writes_since(from), Vec::<String>::new());
    assert!(fake.server.borrow().bodies_read.is_empty());
    assert_eq!(a.versions(), "big=-");
}

/// Ticks `vms` at the same instants, as VMs on different threads: each reads what was there
/// before any of them wrote.
fn concurrent_ticks(fake: &Fake, vms: &mut [&mut Feeds<Fake>], seconds: u64) {
    for _ in 0..seconds * 10 {
        fake.clock.set(fake.clock.get() + 100);
        let snapshot = fake.store.borrow().values.clone();
        fake.store.borrow_mut().frozen = Some(snapshot);
        for vm in vms.iter_mut() {
            vm.tick(false, false);
        }
        fake.store.borrow_mut().frozen = None;
    }
}

fn lease_writes(fake: &Fake) -> Vec<bool> {
    fake.store
        .borrow()
        .writes
        .iter()
        .filter(|(k, ..)| k.ends_with(".lease"))
        .map(|w| w.3)
        .collect()
}

#[test]
fn vms_racing_for_the_lease_make_one_fetch_the_loser_of_a_compare_and_swap_backs_off() {
    let fake = fake();
    let mut a = vm(&fake, BIG);
    let mut b = vm(&fake, BIG);
    // Both find no lease and write one (Envoy has no "create if absent": both writes land);
    // only the VM whose lease is still there a tick later fetches.
    concurrent_ticks(&fake, &mut [&mut a, &mut b], 3);
    assert_eq!(fake.sent_paths(), ["/big.txt"]);
    let token = fake.last_token();
    let (mut holder, mut other) = if fake.respond(&mut a, token, "200") {
        (a, b)
    } else {
        assert!(
            fake.respond(&mut b, token, "200"),
            "neither VM awaited the response"
        );
        (b, a)
    };
    assert_ne!(holder.versions(), "big=-");
    // The holder goes away and releases the lease (an empty value with its own token); both
    // VMs now read it free with the same token: one write lands, the other is a CasMismatch.
    holder.release();
    drop(holder);
    let mut c = vm(&fake, BIG);
    let before = lease_writes(&fake).len();
    concurrent_ticks(&fake, &mut [&mut other, &mut c], 12);
    let raced = &lease_writes(&fake)[before..];
    assert!(
        raced.contains(&false),
        "a compare-and-swap conflict: {raced:?}"
    );
    // Past refresh_s one refresh was sent, by one VM.
    assert_eq!(fake.sent_paths(), ["/big.txt", "/big.txt"]);
}

#[test]
fn a_late_response_to_the_replaced_configuration_is_not_read_by_the_new_one() {
    let fake = fake();
    let mut root = vm(&fake, BIG);
    tick_until(&fake, &mut root, 5, |f| sent(f) == 1);
    let old = fake.last_token();
    // The list changes, and the configuration is replaced (by one more deny entry) while the
    // old fetch is still in flight: the root context's feeds are the new configuration's.
    fake.serve("/big.txt", "192.0.2.2\n");
    let replaced = BIG.replace(r#"["source:big"]"#, r#"["source:big", "198.51.100.1"]"#);
    root = vm(&fake, &replaced);
    tick_until(&fake, &mut root, 10, |f| sent(f) == 2);
    let new = fake.last_token();
    // The old fetch's response comes to the root context, now the new configuration's.
    let from = fake.writes();
    assert!(!fake.respond(&mut root, old, "200"));
    assert_eq!(fake.server.borrow().bodies_read, Vec::<u32>::new());
    assert_eq!(fake.list_writes_since(from), Vec::<String>::new());
    assert_eq!(root.versions(), "big=-");
    // Its own fetch's response is adopted.
    assert!(fake.respond(&mut root, new, "200"));
    assert_eq!(fake.server.borrow().bodies_read, [new]);
    tick_until(&fake, &mut root, 2, |_| true);
    assert_ne!(root.versions(), "big=-");
    assert_eq!(verdict(&root, "192.0.2.2"), Verdict::Deny);
    assert_eq!(verdict(&root, "192.0.2.1"), Verdict::Allow);
}

#[test]
fn an_identical_configuration_adopts_the_published_list_without_fetching() {
    let fake = fake();
    let mut first = vm(&fake, BIG);
    tick_until(&fake, &mut first, 5, |f| sent(f) == 1);
    let token = fake.last_token();
    assert!(fake.respond(&mut first, token, "200"));
    let adopted = first.versions();
    assert_ne!(adopted, "big=-");
    // The same configuration again (a reconfiguration that changed nothing, or another VM):
    // at configure time it already holds the published list.
    let mut again = vm(&fake, BIG);
    drop(first);
    assert_eq!(again.versions(), adopted);
    // It takes over the fetching (the first VM is gone) and goes on from the last fetch's time:
    // nothing is fetched again before refresh_s.
    ticks(&fake, &mut again, 8);
    assert_eq!(fake.sent_paths(), ["/big.txt"]);
    assert_eq!(again.versions(), adopted);
}

#[test]
fn a_source_no_list_uses_is_never_fetched() {
    let fake = fake();
    fake.serve("/spare.txt", "192.0.2.9\n");
    let configuration = BIG.replace(
        r#""refresh_s": 10}},"#,
        r#""refresh_s": 10},
        "spare": {"cluster": "lists", "authority": "lists.test", "path": "/spare.txt", "refresh_s": 10}},"#,
    );
    let mut feeds = vm(&fake, &configuration);
    tick_until(&fake, &mut feeds, 5, |f| sent(f) == 1);
    let token = fake.last_token();
    fake.respond(&mut feeds, token, "200");
    // Past refresh_s: big is fetched again, spare still not.
    ticks(&fake, &mut feeds, 12);
    assert_eq!(fake.sent_paths(), ["/big.txt", "/big.txt"]);
    assert_eq!(fake.metric("client_ip.source.spare.fetch_failed"), 0);
}

#[test]
fn a_304_before_any_body_is_a_failure_retried_not_a_list() {
    let fake = fake();
    let mut feeds = vm(&fake, BIG);
    tick_until(&fake, &mut feeds, 5, |f| sent(f) == 1);
    let token = fake.last_token();
    let from = fake.writes();
    assert!(!fake.respond(&mut feeds, token, "304"));
    assert_eq!(fake.metric("client_ip.source.big.not_modified"), 0);
    assert_eq!(fake.metric("client_ip.source.big.fetch_failed"), 1);
    assert!(fake.server.borrow().bodies_read.is_empty());
    assert_eq!(feeds.versions(), "big=-");
    assert!(
        !fake
            .list_writes_since(from)
            .iter()
            .any(|k| k.ends_with(".table")),
        "no table published"
    );
    // Retried sooner than refresh_s (10 s), and a body then is adopted.
    tick_until(&fake, &mut feeds, 5, |f| sent(f) == 2);
    let token = fake.last_token();
    assert!(fake.respond(&mut feeds, token, "200"));
    assert_ne!(feeds.versions(), "big=-");
}
