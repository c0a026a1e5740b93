//! A policy compiled from a configuration whose lists name sources, before any bind
//! (docs/sources.md): it decides as with every source unavailable, so an adapter that decides
//! with it before the first list arrives fails closed.

use crate::access::Verdict;
use crate::bind::bind;
use crate::config::parse_sourced;
use crate::ipset::{parse_net, IpSet};
use crate::policy::{Downstream, Policy, Request};

const SRC: &str = r#""cluster": "lists", "authority": "lists.example", "path": "/a.txt""#;

fn with_source(extra: &str, lists: &str) -> String {
    format!(r#"{{"sources": {{"feed": {{{SRC}{extra}}}}}, {lists}}}"#)
}

fn set(nets: &[&str]) -> IpSet {
    IpSet::from_nets(nets.iter().map(|n| parse_net(n).unwrap().0))
}

fn verdict(policy: &Policy, client: &str) -> (Verdict, bool) {
    let headers = Vec::new();
    let d = policy.decide(&Request {
        downstream: Downstream::from_filter_state(&format!("{client}:1000")),
        headers: &headers,
    });
    (d.verdict, d.unavailable)
}

#[test]
fn before_any_bind_an_allow_list_of_sources_refuses_and_a_refuse_source_refuses() {
    // The compiled template, as an adapter holds it before the first bind (security: an
    // allow list naming only sources must never read as "no allow list").
    let doc = with_source(
        "",
        r#""access": {"allow": ["source:feed"],
            "rules": [{"name": "r", "hosts": ["r.example"], "allow": ["source:feed"]},
                      {"name": "d", "hosts": ["d.example"], "deny": ["source:feed"]}]}"#,
    );
    let (template, _, _) = parse_sourced(doc.as_bytes()).unwrap();
    let decide = |authority: &str| {
        let headers = vec![(":authority".to_string(), authority.to_string())];
        let d = template.decide(&Request {
            downstream: Downstream::from_filter_state("198.51.100.1:1000"),
            headers: &headers,
        });
        (d.verdict, d.unavailable)
    };
    assert_eq!(decide("top.example"), (Verdict::Deny, false));
    assert_eq!(decide("r.example"), (Verdict::Deny, false));
    assert_eq!(
        decide("d.example"),
        (Verdict::Allow, false),
        "denies nobody"
    );
    let doc = with_source(
        r#", "on_unavailable": "refuse""#,
        r#""access": {"allow": ["source:feed"]}"#,
    );
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    assert_eq!(verdict(&template, "198.51.100.1"), (Verdict::Deny, true));
    // Bound once the source holds a list, the refusal is gone.
    let feed = set(&["198.51.100.0/24"]);
    let policy = bind(&template, &plan, &[Some(&feed)]);
    assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Allow, false));
    assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Deny, false));
}
