//! The `geo` section, `country:`/`asn:` entries, the headers and filter state (docs/geo.md): one
//! test per rule, with databases written by `source::mmdb_tests`.

use std::sync::Arc;

use crate::access::Verdict;
use crate::bind::bind;
use crate::config::parse_sourced;
use crate::policy::{Downstream, Policy, Request};
use crate::source::mmdb::read;
use crate::source::mmdb_tests::{database, V};
use crate::source::table::Content;
use crate::testutil::config_error as error;

const GEO: &str = r#""sources": {
    "countries": {"cluster": "geo", "authority": "geo.internal", "path": "/c.mmdb", "format": "mmdb", "country_field": "country.iso_code"},
    "networks": {"cluster": "geo", "authority": "geo.internal", "path": "/a.mmdb", "format": "mmdb", "asn_field": "autonomous_system_number", "on_unavailable": "refuse"}
  }, "geo": {"country": "countries", "asn": "networks"}"#;

fn doc(rest: &str) -> String {
    format!("{{{GEO}, {rest}}}")
}

fn tables() -> Vec<Content> {
    let rec = |c: &str, n: u32| {
        V::Map(vec![
            ("country", V::Map(vec![("iso_code", V::Str(c.into()))])),
            ("autonomous_system_number", V::U32(n)),
        ])
    };
    let db = database(
        &[("1.2.3.0", 24, 0), ("5.6.0.0", 16, 1)],
        &[rec("KP", 64496), rec("DE", 3320)],
        4,
        24,
    );
    let fields = |c: bool| crate::source::mmdb::Fields {
        country: c.then(|| vec!["country".into(), "iso_code".into()]),
        asn: (!c).then(|| vec!["autonomous_system_number".into()]),
    };
    vec![
        Content::Geo(Arc::new(read(&db, &fields(true), 100).unwrap())),
        Content::Geo(Arc::new(read(&db, &fields(false), 100).unwrap())),
    ]
}

fn bound(rest: &str, available: bool) -> Policy {
    let (template, plan, _) = parse_sourced(doc(rest).as_bytes()).unwrap();
    let t = tables();
    // Sources are in name order: countries, networks.
    let current: Vec<Option<&Content>> = t.iter().map(|c| available.then_some(c)).collect();
    bind(&template, &plan, &current)
}

fn decide(policy: &Policy, client: &str) -> (Verdict, bool, Vec<(String, Option<String>)>) {
    let headers = Vec::new();
    let request = Request {
        downstream: Downstream::from_filter_state(&format!("{client}:1000")),
        headers: &headers,
    };
    let d = policy.decide(&request);
    let plan = policy.header_plan(&request, &d).to_vec();
    (d.verdict, d.unavailable, plan)
}

#[test]
fn a_country_deny_entry_refuses_that_country_only() {
    let p = bound(r#""access": {"deny": ["country:KP"]}"#, true);
    assert_ne!(decide(&p, "1.2.3.4").0, Verdict::Allow);
    assert_eq!(decide(&p, "5.6.7.8").0, Verdict::Allow);
}

#[test]
fn an_allow_list_of_countries_refuses_an_address_with_no_country() {
    let p = bound(r#""access": {"allow": ["country:de"]}"#, true);
    assert_eq!(decide(&p, "5.6.7.8").0, Verdict::Allow);
    assert_ne!(decide(&p, "9.9.9.9").0, Verdict::Allow);
}

#[test]
fn asn_entries_match_in_both_spellings_and_in_rules() {
    let p = bound(
        r#""access": {"rules": [{"name": "r", "deny": ["asn:AS64496", "asn:3320"]}]}"#,
        true,
    );
    assert_ne!(decide(&p, "1.2.3.4").0, Verdict::Allow);
    assert_ne!(decide(&p, "5.6.7.8").0, Verdict::Allow);
    assert_eq!(decide(&p, "9.9.9.9").0, Verdict::Allow);
}

#[test]
fn an_unavailable_refuse_source_refuses_a_decision_that_reads_it() {
    let p = bound(r#""access": {"deny": ["asn:64496"]}"#, false);
    assert!(decide(&p, "9.9.9.9").1);
    let p = bound(r#""access": {"deny": ["country:KP"]}"#, false);
    let (verdict, unavailable, _) = decide(&p, "1.2.3.4");
    assert_eq!(
        (verdict, unavailable),
        (Verdict::Allow, false),
        "empty: no country"
    );
}

#[test]
fn the_headers_are_set_when_known_and_removed_otherwise() {
    let p = bound(
        r#""forward": {"country_header": "x-client-country", "asn_header": "x-client-asn"}"#,
        true,
    );
    let plan = decide(&p, "1.2.3.4").2;
    assert!(
        plan.contains(&("x-client-country".into(), Some("KP".into()))),
        "{plan:?}"
    );
    assert!(
        plan.contains(&("x-client-asn".into(), Some("64496".into()))),
        "{plan:?}"
    );
    let plan = decide(&p, "9.9.9.9").2;
    assert!(
        plan.contains(&("x-client-country".into(), None)),
        "{plan:?}"
    );
    assert!(plan.contains(&("x-client-asn".into(), None)), "{plan:?}");
}

#[test]
fn the_filter_state_values_exist_only_with_a_geo_section() {
    let p = bound(r#""access": {}"#, true);
    let headers = Vec::new();
    let r = Request {
        downstream: Downstream::from_filter_state("1.2.3.4:1"),
        headers: &headers,
    };
    let d = p.decide(&r);
    let geo = p.client_geo(&d).unwrap();
    assert_eq!((geo.country_code(), geo.asn), (Some("KP"), Some(64496)));
    let (plain, _) = crate::config::parse(br#"{"access": {}}"#).unwrap();
    assert!(plain.client_geo(&plain.decide(&r)).is_none());
}

#[test]
fn geo_entries_are_configuration_errors_where_the_contract_says() {
    let cases = [
        (
            r#"{"access": {"deny": ["country:KP"]}}"#,
            "access.deny[0]: needs geo.country",
        ),
        (
            &doc(r#""access": {"deny": ["country:K1"]}"#),
            "access.deny[0]: \"country:K1\" is not a country",
        ),
        (
            &doc(r#""access": {"deny": ["asn:0"]}"#),
            "access.deny[0]: \"asn:0\" is not an asn",
        ),
        (
            &doc(r#""access": {"deny": ["asn:4294967296"]}"#),
            "access.deny[0]: \"asn:4294967296\"",
        ),
        (
            &doc(r#""client_ip": {"trusted_proxies": ["country:KP"]}"#),
            "client_ip.trusted_proxies[0]: country: and asn:",
        ),
    ];
    for (d, want) in cases {
        let e = error(d);
        assert!(e.starts_with(want), "{e}\nwanted {want}");
    }
}

#[test]
fn geo_section_and_field_errors_carry_their_key_path() {
    let mmdb = r#""cluster": "g", "authority": "g", "path": "/x", "format": "mmdb""#;
    let cases = [
        (format!(r#"{{"sources": {{"x": {{{mmdb}}}}}}}"#), "sources.x: an mmdb source names"),
        (format!(r#"{{"sources": {{"x": {{{mmdb}, "country_field": ""}}}}}}"#), "sources.x.country_field: \"\" is not a field path"),
        (format!(r#"{{"sources": {{"x": {{{mmdb}, "asn_field": "a..b"}}}}}}"#), "sources.x.asn_field: \"a..b\" is not a field path"),
        (r#"{"sources": {"x": {"cluster": "g", "authority": "g", "path": "/x", "country_field": "c"}}}"#.to_string(), "sources.x.country_field: is only for sources of format \"mmdb\""),
        (r#"{"sources": {"x": {"cluster": "g", "authority": "g", "path": "/x"}}, "geo": {"country": "x"}}"#.to_string(), "geo.country: source \"x\" is not of format \"mmdb\""),
        (format!(r#"{{"sources": {{"x": {{{mmdb}, "asn_field": "a"}}}}, "geo": {{"country": "x"}}}}"#), "geo.country: source \"x\" has no country_field"),
        (r#"{"geo": {"asn": "nope"}}"#.to_string(), "geo.asn: \"nope\" names no source"),
    ];
    for (d, want) in cases {
        let e = error(&d);
        assert!(e.starts_with(want), "{e}\nwanted {want}");
    }
}

#[test]
fn the_headers_are_network_mode_errors() {
    let e = error(&doc(
        r#""filter_type": "network", "forward": {"country_header": "x-c"}"#,
    ));
    assert!(e.starts_with("forward:"), "{e}");
    // Lists with geo entries apply in network mode.
    let (template, plan, _) = parse_sourced(
        doc(r#""filter_type": "network", "access": {"deny": ["country:KP"]}"#).as_bytes(),
    )
    .unwrap();
    let t = tables();
    let p = bind(&template, &plan, &[Some(&t[0]), Some(&t[1])]);
    assert_ne!(decide(&p, "1.2.3.4").0, Verdict::Allow);
}

#[test]
fn before_any_bind_an_allow_list_of_countries_refuses_and_a_refuse_asn_source_refuses() {
    // The compiled template, before the databases' first bind: `country:`/`asn:` entries name
    // sources too (countries: "empty", networks: "refuse").
    let template = |rest: &str| parse_sourced(doc(rest).as_bytes()).unwrap().0;
    let p = template(r#""access": {"allow": ["country:DE"]}"#);
    assert_eq!(decide(&p, "5.6.7.8").0, Verdict::Deny);
    let p = template(r#""access": {"rules": [{"name": "r", "allow": ["country:DE"]}]}"#);
    assert_eq!(decide(&p, "5.6.7.8").0, Verdict::Deny);
    let p = template(r#""access": {"deny": ["country:KP"]}"#);
    assert_eq!(decide(&p, "1.2.3.4").0, Verdict::Allow, "denies nobody");
    let p = template(r#""access": {"allow": ["asn:3320"]}"#);
    assert_eq!(decide(&p, "5.6.7.8").0, Verdict::Deny);
    assert!(decide(&p, "5.6.7.8").1, "a refuse source: 503");
}
