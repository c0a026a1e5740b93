//! The `sources` section (docs/sources.md), `"source:<name>"` entries, and lists bound to sources.
//!
//! A policy compiled from such a configuration, before any bind, decides as with every source
//! unavailable, so that an adapter deciding with it before the first list arrives fails closed.

use crate::access::Verdict;
use crate::bind::{bind, Slot};
use crate::config::parse_sourced;
use crate::ipset::IpSet;
use crate::policy::{Downstream, Request};
use crate::source::{
    Format, MinPrefix, OnUnavailable, Select, DEFAULT_MAX_BYTES, DEFAULT_MIN_PREFIX,
};
use crate::testutil::{ip_set, verdict, verdict_for, with_feed, FEED};

fn error(doc: &str) -> String {
    parse_sourced(doc.as_bytes()).unwrap_err().to_string()
}

#[test]
fn a_source_gets_its_defaults() {
    let doc = with_feed("", r#""access": {"deny": ["source:feed"]}"#);
    let (_, plan, warnings) = parse_sourced(doc.as_bytes()).unwrap();
    assert!(warnings.is_empty());
    let s = &plan.sources[0];
    assert_eq!((s.name.as_str(), s.cluster.as_str()), ("feed", "lists"));
    assert_eq!(
        (s.format, s.refresh_s, s.timeout_ms),
        (Format::Text, 300, 10_000)
    );
    assert_eq!((s.max_bytes, s.max_entries), (DEFAULT_MAX_BYTES, 2_000_000));
    assert_eq!(
        (s.on_unavailable, s.max_stale_s),
        (OnUnavailable::Empty, None)
    );
    assert_eq!(plan.bindings[0].slot, Slot::Deny);
}

#[test]
fn every_setting_is_read() {
    let doc = r#"{"sources": {"cloudfront": {"cluster": "outbound|443||ip-ranges.amazonaws.com",
        "authority": "ip-ranges.amazonaws.com", "path": "/ip-ranges.json", "format": "aws",
        "select": {"service": ["CLOUDFRONT"]}, "refresh_s": 3600, "timeout_ms": 5000,
        "max_bytes": 1000000, "max_entries": 50000, "on_unavailable": "refuse",
        "max_stale_s": 86400}},
        "client_ip": {"trusted_proxies": ["10.0.0.0/8", "source:cloudfront"]}}"#;
    let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let s = &plan.sources[0];
    assert_eq!(s.format, Format::Aws);
    assert_eq!(
        s.select,
        Select(vec![("service".into(), vec!["CLOUDFRONT".into()])])
    );
    assert_eq!(
        (s.refresh_s, s.timeout_ms, s.max_bytes),
        (3600, 5000, 1_000_000)
    );
    assert_eq!(s.max_entries, 50_000);
    assert_eq!(
        (s.on_unavailable, s.max_stale_s),
        (OnUnavailable::Refuse, Some(86_400))
    );
    assert_eq!(plan.bindings[0].slot, Slot::TrustedProxies);
}

#[test]
fn source_entries_are_accepted_in_every_list() {
    let doc = with_feed(
        "",
        r#""client_ip": {"trusted_proxies": ["source:feed"]},
           "access": {"allow": ["source:feed"], "deny": ["1.2.3.4", "source:feed"],
             "rules": [{"name": "r", "allow": ["source:feed"], "deny": ["source:feed"]}]}"#,
    );
    let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let slots: Vec<Slot> = plan.bindings.iter().map(|b| b.slot).collect();
    assert_eq!(
        slots,
        [
            Slot::TrustedProxies,
            Slot::Allow,
            Slot::Deny,
            Slot::RuleAllow(0),
            Slot::RuleDeny(0)
        ]
    );
}

#[test]
fn a_source_name_used_but_not_defined_is_an_error() {
    let doc = with_feed("", r#""access": {"allow": ["10.0.0.0/8", "source:nope"]}"#);
    assert_eq!(
        error(&doc),
        "access.allow[1]: \"source:nope\" names no source in sources (sources defines: feed)"
    );
    assert_eq!(
        error(r#"{"access": {"rules": [{"name": "r", "deny": ["source:x"]}]}}"#),
        "access.rules[0].deny[0]: \"source:x\" names no source in sources (no sources are defined)"
    );
}

#[test]
fn an_unused_source_is_a_warning_and_not_fetched() {
    let doc = with_feed("", r#""access": {}"#);
    let (_, plan, warnings) = parse_sourced(doc.as_bytes()).unwrap();
    assert!(plan.is_empty());
    assert!(
        warnings[0].0.contains("sources.feed: no list names"),
        "{warnings:?}"
    );
}

#[test]
fn an_unknown_format_is_an_error() {
    let doc = with_feed(r#", "format": "csv""#, r#""access": {}"#);
    assert_eq!(
        error(&doc),
        "sources.feed.format: \"csv\" is not one of \"text\", \"aws\", \"gcp\", \"azure\", \"mmdb\""
    );
}

#[test]
fn a_select_key_the_format_lacks_is_an_error() {
    let doc = with_feed(
        r#", "format": "gcp", "select": {"region": ["x"]}"#,
        r#""access": {}"#,
    );
    assert_eq!(
        error(&doc),
        "sources.feed.select.region: unknown key; format \"gcp\" selects on: service, scope"
    );
    let doc = with_feed(r#", "select": {"service": ["x"]}"#, r#""access": {}"#);
    assert_eq!(
        error(&doc),
        "sources.feed.select.service: unknown key; format \"text\" has no select keys"
    );
    let doc = with_feed(
        r#", "format": "aws", "select": {"service": []}"#,
        r#""access": {}"#,
    );
    assert_eq!(
        error(&doc),
        "sources.feed.select.service: [] is not a non-empty list"
    );
}

#[test]
fn refresh_s_below_10_is_an_error() {
    let doc = with_feed(r#", "refresh_s": 9"#, r#""access": {}"#);
    assert_eq!(
        error(&doc),
        "sources.feed.refresh_s: 9 is not an integer from 10 to 31536000"
    );
}

#[test]
fn an_empty_cluster_authority_or_path_is_an_error() {
    for key in ["cluster", "authority", "path"] {
        let mut spec = serde_json::json!({"cluster": "c", "authority": "a", "path": "/x"});
        spec[key] = "".into();
        let doc = serde_json::json!({"sources": {"feed": spec}}).to_string();
        assert_eq!(error(&doc), format!("sources.feed.{key}: is empty"));
    }
    let missing = r#"{"sources": {"feed": {"cluster": "c", "path": "/x"}}}"#;
    assert_eq!(error(missing), "sources.feed.authority: is missing");
}

#[test]
fn a_path_must_start_with_a_slash() {
    let doc = r#"{"sources": {"feed": {"cluster": "c", "authority": "a", "path": "x.txt"}}}"#;
    assert_eq!(
        error(doc),
        "sources.feed.path: \"x.txt\" is not a request path (it starts with / and has no spaces)"
    );
}

#[test]
fn a_source_name_outside_the_alphabet_is_an_error() {
    let doc = format!(r#"{{"sources": {{"Feed.1": {{{FEED}}}}}}}"#);
    assert_eq!(
        error(&doc),
        "sources.Feed.1: \"Feed.1\" is not a source name (1-64 characters of a-z 0-9 _ -)"
    );
}

#[test]
fn min_prefix_defaults_to_8_and_16_and_is_read_per_family() {
    let doc = with_feed("", r#""client_ip": {"trusted_proxies": ["source:feed"]}"#);
    let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    assert_eq!(plan.sources[0].min_prefix, DEFAULT_MIN_PREFIX);
    assert!(plan.is_trusted(0));
    let doc = with_feed(
        r#", "min_prefix": {"ipv4": 24}"#,
        r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
    );
    let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    assert_eq!(plan.sources[0].min_prefix, MinPrefix { ipv4: 24, ipv6: 16 });
    let doc = with_feed(
        r#", "min_prefix": {"ipv6": 128}"#,
        r#""access": {"deny": ["source:feed"]}"#,
    );
    let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    assert!(
        !plan.is_trusted(0),
        "read on any source, applied as trusted proxies only"
    );
}

#[test]
fn min_prefix_out_of_range_or_of_the_wrong_shape_is_an_error() {
    for (extra, want) in [
        (
            r#""ipv4": 0"#,
            "sources.feed.min_prefix.ipv4: 0 is not an integer from 1 to 32",
        ),
        (
            r#""ipv4": 33"#,
            "sources.feed.min_prefix.ipv4: 33 is not an integer from 1 to 32",
        ),
        (
            r#""ipv6": 129"#,
            "sources.feed.min_prefix.ipv6: 129 is not an integer from 1 to 128",
        ),
        (
            r#""ipv6": "16""#,
            "sources.feed.min_prefix.ipv6: \"16\" is not an integer",
        ),
        (
            r#""v4": 8"#,
            "sources.feed.min_prefix.v4: unknown key; expected one of: ipv4, ipv6",
        ),
    ] {
        let doc = with_feed(
            &format!(r#", "min_prefix": {{{extra}}}"#),
            r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
        );
        assert_eq!(error(&doc), want);
    }
    let doc = with_feed(r#", "min_prefix": 8"#, r#""access": {}"#);
    assert_eq!(error(&doc), "sources.feed.min_prefix: 8 is not an object");
}

#[test]
fn wrong_types_and_unknown_keys_are_errors_with_their_path() {
    let doc = with_feed(r#", "on_unavailable": "drop""#, r#""access": {}"#);
    assert_eq!(
        error(&doc),
        "sources.feed.on_unavailable: \"drop\" is not one of \"empty\", \"refuse\""
    );
    let doc = with_feed(r#", "timeout_ms": "5s""#, r#""access": {}"#);
    assert_eq!(
        error(&doc),
        "sources.feed.timeout_ms: \"5s\" is not an integer"
    );
    assert_eq!(error(r#"{"sources": []}"#), "sources: [] is not an object");
}

#[test]
fn a_bound_deny_list_holds_its_own_entries_and_the_sources() {
    let doc = with_feed("", r#""access": {"deny": ["1.2.3.4", "source:feed"]}"#);
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let feed = ip_set(&["203.0.113.0/24"]);
    let policy = bind(&template, &plan, &[Some(&feed)]);
    assert_eq!(verdict(&policy, "1.2.3.4").0, Verdict::Deny);
    assert_eq!(verdict(&policy, "203.0.113.9").0, Verdict::Deny);
    assert_eq!(verdict(&policy, "198.51.100.1").0, Verdict::Allow);
    // The template still decides with its own entries only.
    assert_eq!(verdict(&template, "203.0.113.9").0, Verdict::Allow);
}

#[test]
fn an_unavailable_source_with_on_unavailable_empty_holds_no_address() {
    let doc = with_feed("", r#""access": {"deny": ["1.2.3.4", "source:feed"]}"#);
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let policy = bind::<IpSet>(&template, &plan, &[None]);
    assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Allow, false));
    assert_eq!(verdict(&policy, "1.2.3.4"), (Verdict::Deny, false));
}

#[test]
fn an_allow_list_naming_an_unavailable_source_stays_in_force() {
    let doc = with_feed("", r#""access": {"allow": ["source:feed"]}"#);
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let policy = bind::<IpSet>(&template, &plan, &[None]);
    assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Deny, false));
    let feed = ip_set(&["203.0.113.0/24"]);
    let policy = bind(&template, &plan, &[Some(&feed)]);
    assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Allow, false));
    assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Deny, false));
}

#[test]
fn an_unavailable_source_with_on_unavailable_refuse_refuses_requests_reading_it() {
    let doc = with_feed(
        r#", "on_unavailable": "refuse""#,
        r#""access": {"deny": ["source:feed"],
            "rules": [{"name": "open", "hosts": ["open.example"]},
                      {"name": "dry", "hosts": ["dry.example"], "deny": ["source:feed"], "mode": "dry_run"}]}"#,
    );
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let policy = bind::<IpSet>(&template, &plan, &[None]);
    let decide = |authority| verdict_for(&policy, "198.51.100.1:1000", Some(authority));
    assert_eq!(decide("top.example"), (Verdict::Deny, true));
    assert_eq!(
        decide("open.example"),
        (Verdict::Allow, false),
        "its lists name no source"
    );
    assert_eq!(decide("dry.example"), (Verdict::DryRunDeny, true));
    let feed = ip_set(&["203.0.113.0/24"]);
    let policy = bind(&template, &plan, &[Some(&feed)]);
    assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Allow, false));
}

#[test]
fn trusted_proxies_from_a_source_are_believed() {
    let doc = with_feed(
        "",
        r#""client_ip": {"trusted_proxies": ["10.0.0.1", "source:feed"]}, "access": {"deny": ["192.0.2.66"]}"#,
    );
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let cdn = ip_set(&["13.32.0.0/15"]);
    let policy = bind(&template, &plan, &[Some(&cdn)]);
    let headers = vec![("x-forwarded-for".to_string(), "192.0.2.66".to_string())];
    let decide = |p: &crate::policy::Policy, downstream: &str| {
        p.decide(&Request {
            downstream: Downstream::from_filter_state(downstream),
            headers: &headers,
        })
        .verdict
    };
    assert_eq!(
        decide(&policy, "13.33.1.1:443"),
        Verdict::Deny,
        "CDN is trusted"
    );
    assert_eq!(
        decide(&policy, "10.0.0.1:443"),
        Verdict::Deny,
        "own entry kept"
    );
    assert_eq!(decide(&policy, "198.51.100.1:443"), Verdict::Allow);
    let unbound = bind::<IpSet>(&template, &plan, &[None]);
    assert_eq!(decide(&unbound, "13.33.1.1:443"), Verdict::Allow);
}

#[test]
fn trusted_proxies_naming_an_unavailable_refuse_source_refuse_every_request() {
    let doc = with_feed(
        r#", "on_unavailable": "refuse""#,
        r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
    );
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    let policy = bind::<IpSet>(&template, &plan, &[None]);
    assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Deny, true));
}

#[test]
fn before_any_bind_an_allow_list_of_sources_refuses_and_a_refuse_source_refuses() {
    // The compiled template, as an adapter holds it before the first bind (security: an
    // allow list naming only sources must never read as "no allow list").
    let doc = with_feed(
        "",
        r#""access": {"allow": ["source:feed"],
            "rules": [{"name": "r", "hosts": ["r.example"], "allow": ["source:feed"]},
                      {"name": "d", "hosts": ["d.example"], "deny": ["source:feed"]}]}"#,
    );
    let (template, _, _) = parse_sourced(doc.as_bytes()).unwrap();
    let decide = |authority| verdict_for(&template, "198.51.100.1:1000", Some(authority));
    assert_eq!(decide("top.example"), (Verdict::Deny, false));
    assert_eq!(decide("r.example"), (Verdict::Deny, false));
    assert_eq!(
        decide("d.example"),
        (Verdict::Allow, false),
        "denies nobody"
    );
    let doc = with_feed(
        r#", "on_unavailable": "refuse""#,
        r#""access": {"allow": ["source:feed"]}"#,
    );
    let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
    assert_eq!(verdict(&template, "198.51.100.1"), (Verdict::Deny, true));
    // Bound once the source holds a list, the refusal is gone.
    let feed = ip_set(&["198.51.100.0/24"]);
    let policy = bind(&template, &plan, &[Some(&feed)]);
    assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Allow, false));
    assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Deny, false));
}
