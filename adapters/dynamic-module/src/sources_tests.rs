//! The sources' I/O against a fake Envoy (a fake list server behind the callouts): what is sent,
//! what a response does to the published policy, what is counted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use client_ip_core::access::Verdict;
use client_ip_core::config;
use client_ip_core::connection::Connection;
use client_ip_core::identity::Link;
use client_ip_core::policy::{Downstream, Origin};
use client_ip_core::testutil::head;

use super::*;

#[derive(Default)]
struct Log {
    names: Vec<String>,
    sent: Vec<(String, Vec<(String, String)>)>,
    counters: HashMap<usize, u64>,
    gauges: HashMap<usize, u64>,
}

#[derive(Clone, Default)]
struct Fake(Rc<RefCell<Log>>);

impl Fake {
    fn stat(&self, name: &str) -> u64 {
        let log = self.0.borrow();
        let id = log.names.iter().position(|n| n == name).expect(name);
        log.counters
            .get(&id)
            .or(log.gauges.get(&id))
            .copied()
            .unwrap_or(0)
    }
}

impl ConfigHost for Fake {
    fn define(&self, name: &str, _gauge: bool) -> Option<usize> {
        let mut log = self.0.borrow_mut();
        log.names.push(name.to_string());
        Some(log.names.len() - 1)
    }
    fn send(
        &self,
        _cluster: &str,
        _authority: &str,
        path: &str,
        extra: &[(String, String)],
        _timeout_ms: u32,
    ) -> Result<u64, SendError> {
        let mut log = self.0.borrow_mut();
        log.sent.push((path.to_string(), extra.to_vec()));
        Ok(log.sent.len() as u64)
    }
    fn increment(&self, id: usize, n: u64) {
        *self.0.borrow_mut().counters.entry(id).or_default() += n;
    }
    fn set_gauge(&self, id: usize, value: u64) {
        self.0.borrow_mut().gauges.insert(id, value);
    }
}

fn feeds(json: &str) -> (Feeds, Fake) {
    let (policy, plan, _) = config::parse_sourced(json.as_bytes()).expect(json);
    let fake = Fake::default();
    let feeds = Feeds::new(Box::new(fake.clone()), json.as_bytes(), policy, plan).expect("sources");
    (feeds, fake)
}

fn verdict(bound: &Bound, ip: &str) -> Verdict {
    let addr = format!("{ip}:1000");
    let downstream = Downstream::read(Some(addr.as_bytes()), || None);
    assert_eq!(downstream.origin, Origin::FilterState);
    bound
        .policy
        .decide_connection(&Connection {
            downstream,
            server_name: "",
            link: Link::default(),
        })
        .verdict
}

fn ok(body: &str, etag: Option<&str>) -> Option<(Head, Vec<u8>)> {
    Some((head("200", body.len(), etag), body.as_bytes().to_vec()))
}

/// A configuration of its own per test: the process's store is shared by the tests.
fn config(test: &str) -> String {
    format!(
        r#"{{"filter_type": "network", "sources": {{"deny": {{"cluster": "lists", "authority": "{test}",
            "path": "/deny.txt", "refresh_s": 10}}}}, "access": {{"deny": ["source:deny"]}}}}"#
    )
}

/// Ticks (every 20 ms, as the clock is the real one) until the machine sends its fetch; the
/// callout's id.
fn fetch(feeds: &mut Feeds, fake: &Fake) -> u64 {
    for _ in 0..150 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        feeds.tick(false);
        let sent = fake.0.borrow().sent.len();
        if sent > 0 {
            return sent as u64;
        }
    }
    panic!("no fetch was sent");
}

#[test]
fn a_fetched_list_is_published_and_counted() {
    let (mut feeds, fake) = feeds(&config("published"));
    assert_eq!(verdict(&feeds.bound(), "192.0.2.1"), Verdict::Allow);
    let id = fetch(&mut feeds, &fake);
    assert_eq!(fake.0.borrow().sent[0].0, "/deny.txt");
    assert!(feeds.response(id, callout_result::SUCCESS, ok("192.0.2.0/24\n", None)));
    let bound = feeds.bound();
    assert_eq!(verdict(&bound, "192.0.2.1"), Verdict::Deny);
    assert_eq!(verdict(&bound, "198.51.100.1"), Verdict::Allow);
    assert!(bound.lists.starts_with("deny="), "{}", bound.lists);
    assert_eq!(fake.stat("client_ip.source.deny.fetch_ok"), 1);
    assert_eq!(fake.stat("client_ip.source.deny.entries"), 1);
}

#[test]
fn a_late_failure_for_an_answered_fetch_keeps_the_list() {
    let (mut feeds, fake) = feeds(&config("failed"));
    let id = fetch(&mut feeds, &fake);
    assert!(feeds.response(
        id,
        callout_result::SUCCESS,
        ok("192.0.2.0/24\n", Some("\"v1\""))
    ));
    let before = feeds.bound().lists;
    assert!(!feeds.response(id, callout_result::RESET, None));
    assert_eq!(fake.stat("client_ip.source.deny.fetch_failed"), 0);
    assert_eq!(verdict(&feeds.bound(), "192.0.2.1"), Verdict::Deny);
    assert_eq!(feeds.bound().lists, before);
}

#[test]
fn a_response_that_is_not_awaited_is_ignored() {
    let (mut feeds, fake) = feeds(&config("unawaited"));
    let id = fetch(&mut feeds, &fake);
    assert!(!feeds.response(
        id + 100,
        callout_result::SUCCESS,
        ok("192.0.2.0/24\n", None)
    ));
    assert_eq!(verdict(&feeds.bound(), "192.0.2.1"), Verdict::Allow);
    assert_eq!(fake.stat("client_ip.source.deny.fetch_ok"), 0);
}

#[test]
fn a_reset_callout_is_a_failed_fetch() {
    let (mut feeds, fake) = feeds(&config("reset"));
    let id = fetch(&mut feeds, &fake);
    assert!(!feeds.response(id, callout_result::RESET, None));
    assert_eq!(fake.stat("client_ip.source.deny.fetch_failed"), 1);
    assert_eq!(verdict(&feeds.bound(), "192.0.2.1"), Verdict::Allow);
}
