//! The decision counters of docs/observability.md, counted in the VM and flushed in batches.
//!
//! A host counter increment is a host call (about a microsecond through V8, the same order as the
//! filter's whole decision). A [`Tally`] counts each request's decision in plain memory; the
//! adapter flushes it to the host's counters from the root context's tick (every
//! [`FLUSH_PERIOD_MS`]) and when the VM stops, one host call per counter that changed. `/stats`
//! therefore lags a decision by at most one flush period.
//!
//! Events an operator must hear of but that may come with every request (a downstream address
//! taken from X-Forwarded-For, a header edit the host refused) are also gathered here and logged
//! from the tick, at most one warning per kind a minute ([`ALARM_PERIOD_MS`]), with the count
//! since the last one: never a log line per request.

use std::cell::{Cell, RefCell};

use crate::access::Verdict;
use crate::policy::{Decision, Origin, Policy};
use crate::rate_limit::Keying;

/// How often the adapter flushes a tally, in milliseconds: the most `/stats` lags behind.
pub const FLUSH_PERIOD_MS: u32 = 250;

/// A counter's slot in a [`Tally`] (see [`Tally::names`]).
pub type Slot = usize;

const ALLOWED: Slot = 0;
const DENIED: Slot = 1;
const DRY_RUN_DENIED: Slot = 2;
const INVALID: Slot = 3;
const DOWNSTREAM_FROM_XFF: Slot = 4;
const LINK_INVALID: Slot = 5;
const UNAVAILABLE: Slot = 6;
const HEADER_EDIT_FAILED: Slot = 7;
/// The counters every configuration has, in slot order; each rule's three follow.
const FIXED: [&str; 8] = [
    "client_ip.allowed",
    "client_ip.denied",
    "client_ip.dry_run_denied",
    "client_ip.invalid",
    "client_ip.downstream_from_xff",
    "client_ip.link_invalid",
    "client_ip.unavailable",
    "client_ip.header_edit_failed",
];

/// The least time between two warnings of one kind, in milliseconds.
pub const ALARM_PERIOD_MS: u64 = 60_000;

/// An event worth a warning, gathered until the next one is due.
#[derive(Debug, Default)]
struct Alarm {
    /// Events since the last warning.
    pending: Cell<u64>,
    /// When the last warning was logged (None: never).
    last_ms: Cell<Option<u64>>,
    /// What the first event since the last warning was about.
    detail: RefCell<Option<String>>,
}

impl Alarm {
    fn raise(&self, detail: impl FnOnce() -> Option<String>) {
        self.pending.set(self.pending.get().saturating_add(1));
        let mut first = self.detail.borrow_mut();
        if first.is_none() {
            *first = detail();
        }
    }

    /// The count and detail to warn about at `now_ms`, when a warning is due; resets them.
    fn due(&self, now_ms: u64) -> Option<(u64, Option<String>)> {
        let n = self.pending.get();
        let due = self
            .last_ms
            .get()
            .is_none_or(|last| now_ms.saturating_sub(last) >= ALARM_PERIOD_MS);
        if n == 0 || !due {
            return None;
        }
        self.pending.set(0);
        self.last_ms.set(Some(now_ms));
        Some((n, self.detail.borrow_mut().take()))
    }
}
/// The rate-limit counters (docs/rate-limits.md), after the rules' when configured.
const RATE_LIMIT_KEYED: &str = "client_ip.rate_limit.keyed";
const RATE_LIMIT_EXEMPT: &str = "client_ip.rate_limit.exempt";

/// The counters of one configuration and which of them a decision counts, with no counts of its
/// own: what [`Tally`] counts into, and what an adapter whose host keeps the counts (Envoy's
/// dynamic modules, where a counter increment is a plain call) uses directly. Immutable, so one
/// value can serve every worker thread.
#[derive(Debug, Clone)]
pub struct Slots {
    names: Vec<String>,
    /// The slot of `client_ip.rate_limit.keyed` (`.exempt` follows), with a `rate_limit` section.
    rate_limit: Option<Slot>,
}

impl Slots {
    /// The slot of `client_ip.header_edit_failed`.
    pub const HEADER_EDIT_FAILED: Slot = HEADER_EDIT_FAILED;

    /// The counters of `policy`: the fixed ones, then `client_ip.rule.<name>.allowed`, `.denied`
    /// and `.dry_run_denied` for each rule, in rule order, then `client_ip.rate_limit.keyed` and
    /// `.exempt` when the policy has a `rate_limit` section.
    pub fn for_policy(policy: &Policy) -> Slots {
        let mut names: Vec<String> = FIXED.iter().map(|n| n.to_string()).collect();
        for rule in &policy.access.rules {
            for outcome in ["allowed", "denied", "dry_run_denied"] {
                names.push(format!("client_ip.rule.{}.{outcome}", rule.name));
            }
        }
        let rate_limit = policy.rate_limit.as_ref().map(|_| names.len());
        if rate_limit.is_some() {
            names.push(RATE_LIMIT_KEYED.to_string());
            names.push(RATE_LIMIT_EXEMPT.to_string());
        }
        Slots { names, rate_limit }
    }

    /// Every counter's name, by slot: what the adapter defines with the host.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Hands `count` each slot one decision counts: its verdict, its rule's verdict, an invalid
    /// entry, a downstream address taken from X-Forwarded-For, an invalid private-link TLV, a
    /// decision that read a list naming an unavailable source (`on_unavailable: "refuse"`).
    #[inline]
    pub fn each(&self, decision: &Decision, mut count: impl FnMut(Slot)) {
        let outcome = match decision.verdict {
            Verdict::Allow => ALLOWED,
            Verdict::Deny => DENIED,
            Verdict::DryRunDeny => DRY_RUN_DENIED,
        };
        count(outcome);
        if let Some(rule) = decision.rule {
            count(FIXED.len() + 3 * rule + outcome);
        }
        if decision.invalid {
            count(INVALID);
        }
        if decision.downstream.origin == Origin::SourceAddressFromXff {
            count(DOWNSTREAM_FROM_XFF);
        }
        if decision.link.invalid {
            count(LINK_INVALID);
        }
        if decision.unavailable {
            count(UNAVAILABLE);
        }
    }

    /// The slot a request's rate-limit keying counts (keyed, or exempt); None without a
    /// `rate_limit` section.
    #[inline]
    pub fn key(&self, keying: &Keying) -> Option<Slot> {
        self.rate_limit.map(|base| match keying {
            Keying::Keyed(_) => base,
            Keying::Exempt => base + 1,
        })
    }
}

/// Decision counts of one configuration not yet handed to the host.
#[derive(Debug)]
pub struct Tally {
    slots: Slots,
    counts: Vec<Cell<u64>>,
    /// Requests refused because their downstream address came from X-Forwarded-For.
    unverified_downstream: Alarm,
    /// Requests refused because a header edit failed.
    edit_failed: Alarm,
}

impl Tally {
    /// The counters of `policy` ([`Slots::for_policy`]), all at zero.
    pub fn for_policy(policy: &Policy) -> Tally {
        let slots = Slots::for_policy(policy);
        let counts = slots.names.iter().map(|_| Cell::new(0)).collect();
        Tally {
            slots,
            counts,
            unverified_downstream: Alarm::default(),
            edit_failed: Alarm::default(),
        }
    }

    /// Counts a request's rate-limit keying: keyed, or exempt.
    #[inline]
    pub fn count_key(&self, keying: &Keying) {
        if let Some(slot) = self.slots.key(keying) {
            self.bump(slot);
        }
    }

    /// Every counter's name, by slot: what the adapter defines with the host.
    pub fn names(&self) -> &[String] {
        self.slots.names()
    }

    /// Counts one decision ([`Slots::each`]); a refusal for a downstream address taken from
    /// X-Forwarded-For also raises its warning.
    #[inline]
    pub fn count(&self, decision: &Decision) {
        self.slots.each(decision, |slot| self.bump(slot));
        if decision.unverified_downstream {
            self.unverified_downstream.raise(|| None);
        }
    }

    /// Counts a request refused because a header edit failed (`client_ip.header_edit_failed`);
    /// `detail` (which header, the host's status) is kept for the next warning.
    pub fn count_edit_failure(&self, detail: impl FnOnce() -> String) {
        self.bump(HEADER_EDIT_FAILED);
        self.edit_failed.raise(|| Some(detail()));
    }

    /// Whether some warning waits for [`Tally::warnings`] (the adapter then reads the clock).
    pub fn alarms_pending(&self) -> bool {
        self.unverified_downstream.pending.get() != 0 || self.edit_failed.pending.get() != 0
    }

    /// The warnings due at `now_ms` (milliseconds of any monotonic or wall clock): at most one
    /// per kind every [`ALARM_PERIOD_MS`], each with the count of events since the last one.
    pub fn warnings(&self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        if let Some((n, _)) = self.unverified_downstream.due(now_ms) {
            out.push(format!(
                "{n} request(s) refused since the last warning: their downstream address came \
                 from X-Forwarded-For (no client_ip.downstream_filter_state value, and Envoy's \
                 source.address held what the header says), so who connected is unknown; \
                 install set_filter_state as the shipped manifests do, or set \
                 client_ip.on_downstream_from_xff: \"use\""
            ));
        }
        if let Some((n, detail)) = self.edit_failed.due(now_ms) {
            out.push(format!(
                "{n} request(s) refused (500) since the last warning: a client-IP header could \
                 not be edited ({}); no request is forwarded unsanitised",
                detail.as_deref().unwrap_or("no detail")
            ));
        }
        out
    }

    #[inline]
    fn bump(&self, slot: Slot) {
        if let Some(count) = self.counts.get(slot) {
            count.set(count.get().wrapping_add(1));
        }
    }

    /// Whether nothing is waiting to be flushed.
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|c| c.get() == 0)
    }

    /// Hands each counter with a count to `flush` (slot, count) and resets it. A flush that
    /// fails (returns false) keeps its count for the next time: nothing counted is lost.
    pub fn drain(&self, mut flush: impl FnMut(Slot, u64) -> bool) {
        for (slot, count) in self.counts.iter().enumerate() {
            let n = count.get();
            if n != 0 && flush(slot, n) {
                count.set(count.get() - n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Spec §5, counters: which counter each decision counts, and that a flush hands over each
    //! count exactly once.
    use super::*;
    use crate::config::parse;
    use crate::policy::{Downstream, Request};
    use crate::testutil::headers as h;

    fn policy(json: &str) -> Policy {
        parse(json.as_bytes()).unwrap().0
    }

    fn flushed(tally: &Tally) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        tally.drain(|slot, n| {
            out.push((tally.names()[slot].clone(), n));
            true
        });
        out
    }

    fn decide(p: &Policy, downstream: Downstream, lines: &[(&str, &str)]) -> Decision {
        let headers = h(lines);
        p.decide(&Request {
            downstream,
            headers: &headers,
        })
    }

    #[test]
    fn counters_are_named_as_the_contract_names_them() {
        let p = policy(r#"{"access": {"rules": [{"name": "admin", "allow": ["10.0.0.0/8"]}]}}"#);
        let names = Tally::for_policy(&p).names().to_vec();
        assert_eq!(
            names,
            [
                "client_ip.allowed",
                "client_ip.denied",
                "client_ip.dry_run_denied",
                "client_ip.invalid",
                "client_ip.downstream_from_xff",
                "client_ip.link_invalid",
                "client_ip.unavailable",
                "client_ip.header_edit_failed",
                "client_ip.rule.admin.allowed",
                "client_ip.rule.admin.denied",
                "client_ip.rule.admin.dry_run_denied",
            ]
        );
    }

    #[test]
    fn rate_limit_counters_count_keyed_and_exempt_requests() {
        let p = policy(
            r#"{"access": {"rules": [{"name": "r", "deny": ["192.0.2.0/24"]}]},
                "rate_limit": {"exempt": ["198.51.100.0/24"]}}"#,
        );
        let tally = Tally::for_policy(&p);
        assert_eq!(
            &tally.names()[FIXED.len() + 3..],
            ["client_ip.rate_limit.keyed", "client_ip.rate_limit.exempt"]
        );
        for ds in [
            "203.0.113.1:1",
            "203.0.113.2:1",
            "198.51.100.1:1",
            "192.0.2.1:1",
        ] {
            let d = decide(&p, Downstream::from_filter_state(ds), &[]);
            tally.count(&d);
            if let Some(keying) = p.rate_limit_key(&d) {
                tally.count_key(&keying);
            }
        }
        let mut got = flushed(&tally);
        got.sort();
        let want: Vec<(String, u64)> = [
            ("client_ip.allowed", 3),
            ("client_ip.denied", 1),
            ("client_ip.rate_limit.exempt", 1),
            ("client_ip.rate_limit.keyed", 2),
            ("client_ip.rule.r.allowed", 3),
            ("client_ip.rule.r.denied", 1),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        assert_eq!(got, want);
        // Without the section, neither counter exists.
        assert!(!Tally::for_policy(&policy("{}"))
            .names()
            .iter()
            .any(|n| n.contains("rate_limit")));
    }

    #[test]
    fn counters_count_each_verdict_and_the_deciding_rule() {
        let p = policy(
            r#"{"access": {"allow": ["203.0.113.0/24"],
                "rules": [{"name": "dry", "path_prefixes": ["/dry"], "allow": ["10.0.0.0/8"],
                           "mode": "dry_run"}]}}"#,
        );
        let tally = Tally::for_policy(&p);
        let from = Downstream::from_filter_state;
        tally.count(&decide(&p, from("203.0.113.5:1"), &[(":path", "/")]));
        tally.count(&decide(&p, from("203.0.113.6:1"), &[(":path", "/")]));
        tally.count(&decide(&p, from("192.0.2.1:1"), &[(":path", "/")]));
        tally.count(&decide(&p, from("192.0.2.1:1"), &[(":path", "/dry/x")]));
        tally.count(&decide(&p, from("10.1.1.1:1"), &[(":path", "/dry")]));
        let mut got = flushed(&tally);
        got.sort();
        let want: Vec<(String, u64)> = [
            ("client_ip.allowed", 3),
            ("client_ip.denied", 1),
            ("client_ip.dry_run_denied", 1),
            ("client_ip.rule.dry.allowed", 1),
            ("client_ip.rule.dry.dry_run_denied", 1),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn counters_count_invalid_entries_and_downstream_from_xff() {
        let p = policy(
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "on_downstream_from_xff": "use"}}"#,
        );
        let tally = Tally::for_policy(&p);
        let xff_derived = Downstream::read(None, || Some(b"10.0.0.1:0".to_vec()));
        tally.count(&decide(
            &p,
            xff_derived,
            &[("x-forwarded-for", "garbage, 10.0.0.1")],
        ));
        let mut got = flushed(&tally);
        got.sort();
        assert_eq!(
            got,
            [
                ("client_ip.allowed".to_string(), 1),
                ("client_ip.downstream_from_xff".to_string(), 1),
                ("client_ip.invalid".to_string(), 1),
            ]
        );
    }

    #[test]
    fn counters_are_flushed_once_and_a_failed_flush_keeps_its_count() {
        let p = Policy::default();
        let tally = Tally::for_policy(&p);
        let d = decide(&p, Downstream::from_filter_state("192.0.2.1:1"), &[]);
        tally.count(&d);
        tally.count(&d);
        // The host refuses the first flush: the count stays.
        tally.drain(|_, _| false);
        assert!(!tally.is_empty());
        tally.count(&d);
        assert_eq!(flushed(&tally), [("client_ip.allowed".to_string(), 3)]);
        assert!(tally.is_empty());
        assert_eq!(flushed(&tally), []);
    }

    #[test]
    fn a_downstream_from_xff_is_refused_by_default_and_warned_about_once_a_minute() {
        let p = policy("{}");
        let tally = Tally::for_policy(&p);
        let xff_derived = Downstream::read(None, || Some(b"203.0.113.5:0".to_vec()));
        for _ in 0..3 {
            let d = decide(&p, xff_derived, &[]);
            assert_eq!(d.verdict, Verdict::Deny);
            assert!(d.unverified_downstream);
            tally.count(&d);
        }
        let mut got = flushed(&tally);
        got.sort();
        assert_eq!(
            got,
            [
                ("client_ip.denied".to_string(), 3),
                ("client_ip.downstream_from_xff".to_string(), 3),
            ]
        );
        assert!(tally.alarms_pending());
        let w = tally.warnings(1_000);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("3 request(s) refused"), "{}", w[0]);
        assert!(!tally.alarms_pending());
        // More within the minute: gathered, not logged.
        tally.count(&decide(&p, xff_derived, &[]));
        assert_eq!(
            tally.warnings(1_000 + ALARM_PERIOD_MS - 1),
            Vec::<String>::new()
        );
        tally.count(&decide(&p, xff_derived, &[]));
        let w = tally.warnings(1_000 + ALARM_PERIOD_MS);
        assert!(w.len() == 1 && w[0].starts_with("2 request(s)"), "{w:?}");
        // Nothing new: no warning, however late.
        assert!(tally.warnings(10 * ALARM_PERIOD_MS).is_empty());
        // A real downstream address is never refused for it.
        let d = decide(&p, Downstream::from_filter_state("203.0.113.5:1"), &[]);
        assert!(!d.unverified_downstream && d.verdict == Verdict::Allow);
    }

    #[test]
    fn a_failed_header_edit_is_counted_and_warned_about_once_a_minute_with_its_first_detail() {
        let tally = Tally::for_policy(&Policy::default());
        tally.count_edit_failure(|| "set x-real-ip: InternalFailure".into());
        tally.count_edit_failure(|| "remove x_real_ip: BadArgument".into());
        assert_eq!(
            flushed(&tally),
            [("client_ip.header_edit_failed".to_string(), 2)]
        );
        let w = tally.warnings(5);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("2 request(s) refused (500)"), "{}", w[0]);
        assert!(w[0].contains("set x-real-ip: InternalFailure"), "{}", w[0]);
        tally.count_edit_failure(|| "later".into());
        assert!(tally.warnings(6).is_empty());
        assert!(tally.warnings(5 + ALARM_PERIOD_MS)[0].contains("later"));
    }
}
