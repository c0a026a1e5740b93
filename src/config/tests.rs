//! One test per error of docs/errors.md, plus the defaults.
use super::*;
use crate::access::{MatchOn, Mode, Verdict};
use crate::forward::XffMode;

use crate::testutil::config_error as error;

#[test]
fn empty_or_absent_configuration_means_all_defaults() {
    for doc in [
        "",
        "  \n",
        "{}",
        "{\"client_ip\": {}, \"access\": {}, \"forward\": {}}",
        "{\"access\": null}",
    ] {
        let (p, w) = parse(doc.as_bytes()).unwrap();
        assert!(w.is_empty());
        assert_eq!(p.downstream_filter_state, "client_ip.downstream_address");
        assert_eq!(p.resolver.header(), "x-forwarded-for");
        assert_eq!(p.forwarding.headers, vec!["x-real-ip".to_string()]);
        assert_eq!(p.forwarding.port_header, None);
        assert_eq!(p.forwarding.xff, XffMode::Keep);
        assert_eq!(p.access.deny_status, 403);
        assert_eq!(p.access.deny_body, "access denied\n");
        assert_eq!(p.access.mode, Mode::Enforce);
        assert_eq!(p.access.match_on, MatchOn::Client);
    }
}

#[test]
fn the_spec_example_configuration_parses() {
    let doc = r#"{
      "client_ip": { "downstream_filter_state": "client_ip.downstream_address",
        "trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48"],
        "header": "X-Forwarded-For", "on_invalid": "unknown" },
      "access": { "mode": "enforce", "match": "client",
        "allow": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"], "deny": ["203.0.113.66"],
        "deny_status": 403, "deny_body": "access denied\n",
        "rules": [ { "name": "admin", "hosts": ["admin.example.com", "*.internal.example.com"],
          "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"], "deny": [], "mode": "enforce" } ] },
      "forward": { "headers": ["X-Real-IP"], "port_header": "x-client-port", "x_forwarded_for": "keep" }
    }"#;
    let (p, _) = parse(doc.as_bytes()).unwrap();
    assert_eq!(p.access.rules.len(), 1);
    assert_eq!(p.forwarding.headers, vec!["x-real-ip".to_string()]);
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(
        p.access.decide(ip("203.0.113.66"), None, "h", "/").0,
        Verdict::Deny
    );
    assert_eq!(
        p.access.decide(ip("198.51.100.7"), None, "h", "/").0,
        Verdict::Allow
    );
    assert_eq!(
        p.access
            .decide(ip("203.0.113.1"), None, "x.internal.example.com", "/admin/")
            .0,
        Verdict::Deny
    );
}

#[test]
fn bad_json_is_refused() {
    assert!(error("{\"access\": ").starts_with("configuration: not valid JSON"));
    assert_eq!(error("[]"), "configuration: [] is not an object");
}

#[test]
fn unknown_key_is_refused_with_its_path() {
    assert_eq!(
        error(r#"{"acess": {}}"#),
        "acess: unknown key; expected one of: client_ip, access, forward, sources, geo, filter_type, rate_limit"
    );
    assert!(
        error(r#"{"access": {"rules": [{"name": "a", "paths": []}]}}"#)
            .starts_with("access.rules[0].paths: unknown key")
    );
    // A key with a line break (or a very long one) is quoted: the error stays one log line.
    assert_eq!(
        error("{\"forward\": {\"a\\nb\": 1}}"),
        "forward.\"a\\nb\": unknown key; expected one of: headers, port_header, x_forwarded_for, link_header, strip, country_header, asn_header"
    );
}

#[test]
fn value_of_the_wrong_type_is_refused() {
    assert_eq!(
        error(r#"{"access": {"allow": "10.0.0.0/8"}}"#),
        "access.allow: \"10.0.0.0/8\" is not a list"
    );
    assert_eq!(
        error(r#"{"access": {"deny_status": "403"}}"#),
        "access.deny_status: \"403\" is not an integer"
    );
    assert_eq!(error(r#"{"forward": []}"#), "forward: [] is not an object");
    assert_eq!(
        error(r#"{"access": {"deny_body": 7}}"#),
        "access.deny_body: 7 is not a string"
    );
}

#[test]
fn bad_address_or_cidr_is_refused() {
    assert_eq!(
        error(r#"{"access": {"allow": ["10.0.0.0/8", "::1", "10.0.0.300/8"]}}"#),
        "access.allow[2]: \"10.0.0.300/8\" is not an IP address or CIDR"
    );
    for bad in [
        "10.0.0.0/33",
        "2001:db8::/129",
        "010.0.0.1",
        " 10.0.0.1",
        "example.com",
        "10.0.0.0/",
        "fe80::1%eth0",
    ] {
        let e = error(&format!(
            r#"{{"client_ip": {{"trusted_proxies": ["{bad}"]}}}}"#
        ));
        assert!(e.starts_with("client_ip.trusted_proxies[0]: "), "{e}");
    }
    assert_eq!(
        error(r#"{"access": {"rules": [{"name": "a", "deny": [7]}]}}"#),
        "access.rules[0].deny[0]: 7 is not an IP address or CIDR"
    );
}

#[test]
fn unknown_enum_value_is_refused() {
    assert_eq!(
        error(r#"{"access": {"mode": "enforcing"}}"#),
        "access.mode: \"enforcing\" is not one of \"enforce\", \"dry_run\""
    );
    assert!(error(r#"{"access": {"match": "peer"}}"#).starts_with("access.match: \"peer\""));
    assert!(error(r#"{"client_ip": {"on_invalid": "drop"}}"#)
        .starts_with("client_ip.on_invalid: \"drop\""));
    assert!(error(r#"{"forward": {"x_forwarded_for": "set"}}"#)
        .starts_with("forward.x_forwarded_for: \"set\""));
}

#[test]
fn host_bits_warnings_are_listed_up_to_ten_then_counted() {
    // 25 sloppy CIDRs across two lists (one read with the document, one inside a rule).
    let sloppy = |n: usize, base: u8| {
        (0..n)
            .map(|i| format!("\"10.{base}.{i}.1/24\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let json = format!(
        r#"{{"access": {{"allow": [{}], "rules": [{{"name": "r", "deny": [{}]}}]}}}}"#,
        sloppy(15, 1),
        sloppy(10, 2)
    );
    let (_, w) = parse(json.as_bytes()).unwrap();
    assert_eq!(w.len(), WARNINGS_LISTED + 1, "{w:?}");
    assert_eq!(
        w[0].0,
        "access.allow[0]: \"10.1.0.1/24\" has host bits set; using 10.1.0.0/24"
    );
    assert!(w[9].0.starts_with("access.allow[9]:"), "{w:?}");
    assert_eq!(
        w[10].0,
        "15 more CIDRs have host bits set (not listed); each is used as its network"
    );
    let (_, w) = parse_whole_tree(json.as_bytes()).unwrap();
    assert_eq!(w.len(), WARNINGS_LISTED + 1);
    assert!(w[10].0.starts_with("15 more"));
}

#[test]
fn cidr_with_host_bits_is_accepted_as_its_network_with_a_warning() {
    let (p, w) = parse(br#"{"access": {"allow": ["10.1.2.3/8"]}}"#).unwrap();
    assert_eq!(
        w,
        vec![ConfigWarning(
            "access.allow[0]: \"10.1.2.3/8\" has host bits set; using 10.0.0.0/8".into()
        )]
    );
    let ip = |s: &str| Some(s.parse().unwrap());
    assert_eq!(
        p.access.decide(ip("10.200.0.1"), None, "h", "/").0,
        Verdict::Allow
    );
}

#[test]
fn long_values_are_shortened_in_errors() {
    let long = "x".repeat(500);
    let e = error(&format!(r#"{{"access": {{"allow": ["{long}"]}}}}"#));
    assert!(e.len() < 150, "{e}");
    assert!(e.ends_with("… is not an IP address or CIDR"));
}

/// The configuration as it was read before the lists were streamed: a whole `Value` tree,
/// every list walked entry by entry.
fn parse_whole_tree(bytes: &[u8]) -> Result<(Policy, Vec<ConfigWarning>), ConfigError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError {
        path: "configuration".into(),
        message: format!("not valid JSON ({e})"),
    })?;
    let mut walk = Walk::default();
    let policy = walk.policy(&doc)?;
    Ok((policy, walk.warnings.into_vec()))
}

#[test]
fn streamed_lists_give_the_same_policy_errors_and_warnings_as_the_whole_tree() {
    let docs = [
        r#"{"access": {"allow": ["10.1.2.3/8", "::ffff:10.0.0.0/104", "2001:db8::1/32", "bad", "1.2.3.4/33"]}}"#,
        r#"{"access": {"allow": ["10.1.2.3/8", 7]}}"#,
        r#"{"access": {"deny": ["10.0.0.0/8", null]}}"#,
        r#"{"access": {"deny": [true]}}"#,
        r#"{"access": {"deny": [1.5, "x"]}}"#,
        r#"{"access": {"deny": [{"a": ["1.2.3.4"]}]}}"#,
        r#"{"access": {"deny": [["1.2.3.4"], "bad"]}}"#,
        r#"{"access": {"deny": ["\u0031.2.3.4", "\"quoted\"\n"]}}"#,
        r#"{"access": {"allow": "10.0.0.0/8"}}"#,
        r#"{"access": {"allow": {"x": ["1.2.3.4"]}}}"#,
        r#"{"access": {"allow": 3, "deny": ["bad"]}}"#,
        r#"{"access": {"allow": [], "deny": []}}"#,
        r#"{"access": {"allow": null, "deny": ["1.2.3.4"]}}"#,
        r#"{"access": {"deny": ["bad"], "mode": "nope"}}"#,
        r#"{"access": {"deny": ["bad"]}, "acess": {}}"#,
        r#"{"access": {"allow": ["bad"], "allow": ["1.2.3.4/24"]}}"#,
        r#"{"access": {"allow": ["1.2.3.4/24"], "allow": ["bad"]}}"#,
        r#"{"access": {"allow": ["bad"]}, "access": {"deny": []}}"#,
        r#"{"access": {"allow": ["1.2.3.4/24"]}, "access": {"allow": "x"}}"#,
        r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8", "300.0.0.0/8"], "downstream_filter_state": ""}}"#,
        r#"{"client_ip": {"trusted_proxies": ["bad"], "trusted_hops": 2}}"#,
        r#"{"client_ip": {"trusted_proxies": ["10.9.9.9/8", "2001:db8:ffff::1/48"]}, "access": {"allow": ["bad"]}}"#,
        r#"{"client_ip": {"trusted_proxies": "10.0.0.0/8"}}"#,
        r#"{"access": {"rules": [{"name": "a", "allow": ["10.1.0.0/8"], "deny": ["x"]}]}}"#,
        r#"{"access": {"rules": [{"name": "a", "deny": ["10.1.1.1/16"]}, {"name": "b", "allow": ["::1/64", 5]}]}}"#,
        r#"{"access": {"rules": [{"name": "a", "allow": ["bad"]}, {"name": "a"}]}}"#,
        r#"{"access": {"rules": [{"allow": ["bad"]}]}}"#,
        r#"{"access": {"rules": [{"name": "a", "allow": ["bad"]}], "rules": [{"name": "b"}]}}"#,
        r#"{"access": {"rules": [{"name": "a"}], "rules": [{"name": "b", "allow": ["1.1.1.1/8"]}]}}"#,
        r#"{"access": {"rules": [["1.2.3.4"]]}}"#,
        r#"{"access": {"rules": {"allow": ["bad"]}}}"#,
        r#"{"access": {"allow": ["1.2.3.4"]}, "forward": {"allow": []}}"#,
        r#"{"allow": ["bad"]}"#,
        r#"[{"access": {"allow": ["bad"]}}]"#,
        r#"{"access": {"allow": ["1.2.3.4", }}"#,
        r#"{"access": {"allow": ["1.2.3.4"]}} x"#,
        r#"{"access": {"allow": ["1.2.3.4" "#,
        r#"{"access": {"deny": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#,
        r#"{"access": {"allow": ["0.0.0.0/0", "::/0", "255.255.255.255", "ffff::/16"]}}"#,
        r#"{"access": {"allow": ["10.1.2.3/8", "aws-vpce:vpce-0a1b2c3d", "gcp-psc:1"], "deny": ["azure-link:7"]}}"#,
        r#"{"access": {"rules": [{"name": "a", "allow": ["1.1.1.1/8", "aws-vpce:vpce-0A1B2C3D"]}]}}"#,
        r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8", "gcp-psc:5"]}}"#,
    ];
    for doc in docs {
        let streamed = format!("{:?}", parse(doc.as_bytes()));
        let whole = format!("{:?}", parse_whole_tree(doc.as_bytes()));
        assert_eq!(streamed, whole, "{doc}");
    }
    // And on a big list, compiled the same way.
    let big: Vec<String> = (0..5000u32)
        .map(|i| {
            if i % 3 == 0 {
                format!("\"2001:db8:{:x}::/{}\"", i, 40 + i % 80)
            } else {
                format!(
                    "\"{}.{}.{}.{}/{}\"",
                    i % 251,
                    i % 13,
                    i % 7,
                    i % 255,
                    8 + i % 25
                )
            }
        })
        .collect();
    let doc = format!(r#"{{"access": {{"allow": [{}]}}}}"#, big.join(","));
    assert_eq!(
        format!("{:?}", parse(doc.as_bytes())),
        format!("{:?}", parse_whole_tree(doc.as_bytes()))
    );
}
