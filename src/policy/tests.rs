//! Spec §1 (the downstream address) and whole-request decisions.
use super::*;
use crate::config::parse;
use crate::forward::EditFailed;
use crate::testutil::{headers as h, Recorder};

#[test]
fn downstream_is_read_from_filter_state_first() {
    let mut asked = false;
    let d = Downstream::read(Some(b"203.0.113.7:4000"), || {
        asked = true;
        Some(b"10.0.0.1:0".to_vec())
    });
    assert_eq!(d.origin, Origin::FilterState);
    assert_eq!(d.addr.unwrap().to_string(), "203.0.113.7");
    assert_eq!(d.addr.unwrap().port(), Some(4000));
    assert!(
        !asked,
        "source.address must not be read when the filter state has the address"
    );
}

#[test]
fn downstream_falls_back_to_source_address() {
    let d = Downstream::read(None, || Some(b"[2001:db8::7]:5".to_vec()));
    assert_eq!(d.origin, Origin::SourceAddress);
    assert_eq!(d.addr.unwrap().to_string(), "2001:db8::7");
    // An unreadable filter state value falls back too.
    let d = Downstream::read(Some(b"garbage"), || Some(b"10.0.0.1:7".to_vec()));
    assert_eq!(d.origin, Origin::SourceAddress);
}

#[test]
fn downstream_with_port_0_from_source_address_is_xff_derived() {
    let d = Downstream::read(None, || Some(b"6.6.6.6:0".to_vec()));
    assert_eq!(d.origin, Origin::SourceAddressFromXff);
    assert_eq!(d.addr.unwrap().to_string(), "6.6.6.6");
}

#[test]
fn downstream_missing_everywhere_is_unknown() {
    let d = Downstream::read(None, || None);
    assert_eq!((d.addr, d.origin), (None, Origin::Missing));
    let d = Downstream::read(None, || Some(b"/tmp/pipe".to_vec()));
    assert_eq!((d.addr, d.origin), (None, Origin::Missing));
}

#[test]
fn mapped_proxy_protocol_source_is_the_ipv4_client() {
    let d = Downstream::from_filter_state("[::ffff:203.0.113.9]:1234");
    assert_eq!(d.addr.unwrap().to_string(), "203.0.113.9");
}

#[test]
fn a_whole_request_is_resolved_decided_and_planned() {
    let (policy, _) = parse(
        br#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
             "access": {"allow": ["203.0.113.0/24"],
                        "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]}]},
             "forward": {"headers": ["x-real-ip", "x-client-ip"], "port_header": "x-client-port"}}"#,
    )
    .unwrap();
    let headers = h(&[
        (":authority", "example.com"),
        (":path", "/admin/users?x=1"),
        ("x-forwarded-for", "6.6.6.6, 203.0.113.5:7000"),
        ("x-real-ip", "6.6.6.6"),
    ]);
    let request = Request {
        downstream: Downstream::from_filter_state("10.1.2.3:5555"),
        headers: &headers,
    };
    let d = policy.decide(&request);
    assert_eq!(d.client.unwrap().to_string(), "203.0.113.5");
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(policy.rule_name(&d), Some("admin"));
    let plan = policy.header_plan(&request, &d).to_vec();
    assert_eq!(
        plan,
        vec![
            ("x-real-ip".to_string(), Some("203.0.113.5".to_string())),
            ("x-client-ip".to_string(), Some("203.0.113.5".to_string())),
            ("x-client-port".to_string(), Some("7000".to_string())),
        ]
    );
}

#[test]
fn a_sanitising_configuration_reads_every_line_once_and_one_that_does_not_reads_none() {
    // The default writes x-real-ip and strips forward.strip: every line is read, once, to
    // find the spellings to remove (the same read serves every other header).
    let (policy, _) = parse(b"").unwrap();
    assert_eq!(policy.header_reads(), HeaderReads::AllLines);
    let (policy, _) = parse(
        br#"{"access": {"allow": ["10.0.0.0/8"]},
             "forward": {"x_forwarded_for": "replace", "headers": [], "strip": []}}"#,
    )
    .unwrap();
    assert_eq!(policy.header_reads(), HeaderReads::Nothing);
}

#[test]
fn header_reads_name_what_the_configuration_uses() {
    // Without sanitising (no header written, none stripped), only what the decision needs.
    const QUIET: &str = r#""headers": [], "strip": []"#;
    let reads = |json: &str| parse(json.as_bytes()).unwrap().0.header_reads();
    let values =
        |names: &[&str]| HeaderReads::Values(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        reads(&format!(
            r#"{{"client_ip": {{"trusted_hops": 1}}, "forward": {{{QUIET}}}}}"#
        )),
        values(&["x-forwarded-for"])
    );
    assert_eq!(
        reads(&format!(
            r#"{{"client_ip": {{"trusted_proxies": ["10.0.0.0/8"]}},
                "forward": {{{QUIET}, "x_forwarded_for": "append"}}}}"#
        )),
        values(&["x-forwarded-for"])
    );
    assert_eq!(
        reads(&format!(
            r#"{{"access": {{"rules": [{{"name": "a", "hosts": ["a.example"]}},
                {{"name": "b", "path_prefixes": ["/b"]}}]}}, "forward": {{{QUIET}}}}}"#
        )),
        values(&[":authority", ":path"])
    );
    assert_eq!(
        reads(&format!(
            r#"{{"client_ip": {{"trusted_hops": 1, "header": "X-Real-IP"}}, "forward": {{{QUIET}}}}}"#
        )),
        HeaderReads::AllLines
    );
    // Sanitising: every line, whatever else is configured.
    assert_eq!(
        reads(r#"{"client_ip": {"trusted_hops": 1}}"#),
        HeaderReads::AllLines
    );
    assert_eq!(
        reads(r#"{"forward": {"headers": [], "strip": ["forwarded"]}}"#),
        HeaderReads::AllLines
    );
}

/// The adapter fetches only [`Policy::header_reads`]; with only those, every decision and
/// header plan must be what all the headers give. Header sets are as Envoy presents them:
/// X-Forwarded-For lines already joined into one (an inline header), other names repeated.
#[test]
fn header_reads_are_enough_to_decide_and_plan() {
    let configs = [
        "",
        r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "access": {"allow": ["203.0.113.0/24"]}}"#,
        r#"{"client_ip": {"trusted_hops": 2, "on_invalid": "downstream"}, "forward": {"x_forwarded_for": "append", "port_header": "x-client-port"}}"#,
        r#"{"forward": {"x_forwarded_for": "append"}}"#,
        r#"{"forward": {"x_forwarded_for": "replace", "headers": ["x-real-ip", "x-client-ip"]}}"#,
        r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "header": "x-real-ip"}, "access": {"allow": ["203.0.113.0/24"]}}"#,
        r#"{"client_ip": {"trusted_hops": 1, "header": "cf-connecting-ip"}}"#,
        r#"{"access": {"allow": ["10.0.0.0/8"], "match": "downstream",
            "rules": [{"name": "admin", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"], "allow": ["203.0.113.5"]},
                      {"name": "api", "path_prefixes": ["/api"], "deny": ["10.1.2.3"], "mode": "dry_run"},
                      {"name": "any", "hosts": ["*.example.com"]}]}}"#,
        r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "forward": {"headers": [], "strip": [], "x_forwarded_for": "append"}}"#,
        r#"{"client_ip": {"trusted_hops": 1}, "forward": {"headers": [], "strip": []},
            "access": {"rules": [{"name": "b", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"], "path_case": "insensitive", "allow": ["10.0.0.0/8"]}]}}"#,
    ];
    let requests: [&[(&str, &str)]; 8] = [
        &[],
        &[
            (":authority", "admin.example.com"),
            (":path", "/admin/x"),
            ("x-forwarded-for", "203.0.113.5, 10.9.9.9"),
        ],
        &[
            (":authority", "www.example.com:8080"),
            (":path", "/api?q=1"),
            ("x-forwarded-for", "6.6.6.6,203.0.113.5:4000, 10.1.2.3"),
        ],
        &[
            ("x-forwarded-for", "garbage, 10.0.0.1"),
            ("x-real-ip", "203.0.113.9"),
            ("cf-connecting-ip", "203.0.113.8"),
        ],
        &[
            ("x-real-ip", "203.0.113.9"),
            ("x-real-ip", "203.0.113.10"),
            ("cf-connecting-ip", "[2001:db8::1]:443"),
        ],
        &[
            (":path", "/admin"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-client-port", "1"),
        ],
        &[
            ("X-Forwarded-For", "203.0.113.5"),
            (":authority", "ADMIN.example.com."),
            (":path", "/admin"),
        ],
        &[
            (":authority", "admin.example.com:x"),
            (":path", "/x/..;/Admin"),
            ("x_real_ip", "203.0.113.9"),
            ("forwarded", "for=203.0.113.9"),
            ("x_forwarded_for", "203.0.113.9"),
        ],
    ];
    let downstreams = ["10.1.2.3:5000", "203.0.113.5:6000", "[2001:db8::1]:7"];
    for config in configs {
        let (policy, _) = parse(config.as_bytes()).unwrap();
        let reads = policy.header_reads();
        for lines in requests {
            let all = h(lines);
            for ds in downstreams {
                let downstream = Downstream::from_filter_state(ds);
                // What the adapter fetches for this request.
                let fetched = match policy.fetch_headers(&reads, &downstream, &mut InMemory(&all)) {
                    Ok(lines) => lines,
                    Err(never) => match never {},
                };
                let full = Request {
                    downstream,
                    headers: &all,
                };
                let part = Request {
                    downstream,
                    headers: &fetched,
                };
                let (a, b) = (policy.decide(&full), policy.decide(&part));
                assert_eq!(a, b, "config {config}, headers {lines:?}, downstream {ds}");
                assert_eq!(
                    policy.header_plan(&full, &a).to_vec(),
                    policy.header_plan(&part, &b).to_vec(),
                    "config {config}, headers {lines:?}, downstream {ds}"
                );
            }
        }
    }
}

/// A header source that counts its reads: each one is a host call in the filter.
struct Counting<'a>(InMemory<'a>, usize);

impl HeaderSource for Counting<'_> {
    type Error = std::convert::Infallible;
    fn value(&mut self, name: &str) -> Result<Option<String>, Self::Error> {
        self.1 += 1;
        self.0.value(name)
    }
    fn lines(&mut self) -> Result<Vec<(String, String)>, Self::Error> {
        self.1 += 1;
        self.0.lines()
    }
}

/// Header reads and header writes per request for the configurations of `make bench`'s cases
/// (C) and (D), with its request (tests/test_host_calls.py counts every host call of these
/// cases in Envoy, with the `count-host-calls` build).
#[test]
fn host_calls_per_request_of_the_bench_cases() {
    let c = Policy::default();
    let d = parse(
        br#"{"client_ip": {"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"]},
             "access": {"allow": ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"],
                        "deny": ["203.0.113.66"],
                        "rules": [{"name": "admin", "hosts": ["admin.example.com"],
                                   "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"]}]},
             "forward": {"headers": ["x-real-ip", "x-client-ip"]}}"#,
    )
    .unwrap()
    .0;
    let wire = h(&[
        (":authority", "www.example.com"),
        (":path", "/api/v1/items?page=2"),
        ("user-agent", "wrk"),
        ("x-forwarded-for", "203.0.113.7, 10.1.2.3"),
    ]);
    let downstream = Downstream::from_filter_state("127.0.0.1:40000");
    let per_request = |p: &Policy| {
        let mut source = Counting(InMemory(&wire), 0);
        let lines = p
            .fetch_headers(&p.header_reads(), &downstream, &mut source)
            .unwrap();
        let request = Request {
            downstream,
            headers: &lines,
        };
        let decision = p.decide(&request);
        assert_eq!(decision.verdict, crate::access::Verdict::Allow);
        let mut writes = 0;
        p.header_plan(&request, &decision).for_each(|_| writes += 1);
        (source.1, writes)
    };
    assert_eq!(
        per_request(&c),
        (1, 1),
        "(C): the header lines read once, x-real-ip set"
    );
    assert_eq!(
        per_request(&d),
        (1, 2),
        "(D): the header lines read once (X-Forwarded-For and :authority among them), \
         x-real-ip and x-client-ip set"
    );
}

#[test]
fn a_failed_header_edit_refuses_the_request_and_stops_the_edits() {
    let (p, _) = parse(br#"{"forward": {"headers": ["x-real-ip", "x-client-ip"]}}"#).unwrap();
    let lines = h(&[("x_real_ip", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
    let request = Request {
        downstream: Downstream::from_filter_state("203.0.113.5:1"),
        headers: &lines,
    };
    let decision = p.decide(&request);
    let plan = p.header_plan(&request, &decision);
    // Every edit succeeds: forwarded.
    let mut all = Recorder::default();
    assert_eq!(plan.apply(&mut all), Ok(()));
    assert_eq!(
        all.edits,
        [
            "remove x_real_ip",
            "remove forwarded",
            "set x-real-ip 203.0.113.5",
            "set x-client-ip 203.0.113.5"
        ]
    );
    // Each edit failing in turn: refused, nothing edited after it, the edit and status named.
    for fail_at in 0..all.edits.len() {
        let mut host = Recorder::failing_at(fail_at);
        let failed = plan.apply(&mut host);
        assert_eq!(host.edits, all.edits[..fail_at], "edit {fail_at}");
        let mut words = all.edits[fail_at].split(' ');
        let (verb, name) = (words.next().unwrap(), words.next().unwrap());
        assert_eq!(
            failed,
            Err(EditFailed {
                detail: format!("{verb} {name}: \"BadArgument\"")
            })
        );
    }
    assert_eq!(Refusal::EDIT_FAILED.status, 500);
}

#[test]
fn a_refusal_replies_with_the_deny_status_or_503_for_an_unavailable_source() {
    let (p, _) = parse(br#"{"access": {"deny_status": 451, "deny_body": "no\n"}}"#).unwrap();
    let xff = Downstream::read(None, || Some(b"203.0.113.5:0".to_vec()));
    let d = p.decide(&Request {
        downstream: xff,
        headers: &[],
    });
    assert_eq!(
        p.refusal(&d),
        Refusal {
            status: 451,
            body: "no\n",
            details: "client_ip_filter_downstream_from_xff"
        }
    );
    let mut d2 = d;
    d2.unverified_downstream = false;
    assert_eq!(p.refusal(&d2).details, "client_ip_filter_denied");
    d2.unavailable = true;
    assert_eq!(p.refusal(&d2).status, 503);
}

#[test]
fn on_downstream_from_xff_use_takes_the_address_and_dry_run_lets_it_through() {
    let xff = Downstream::read(None, || Some(b"203.0.113.5:0".to_vec()));
    let decide = |json: &str| {
        parse(json.as_bytes()).unwrap().0.decide(&Request {
            downstream: xff,
            headers: &[],
        })
    };
    let d = decide(r#"{"client_ip": {"on_downstream_from_xff": "use"}}"#);
    assert_eq!(
        (d.verdict, d.unverified_downstream),
        (Verdict::Allow, false)
    );
    assert_eq!(
        d.client.map(|c| c.ip().to_string()).as_deref(),
        Some("203.0.113.5")
    );
    let d = decide(r#"{"access": {"mode": "dry_run"}}"#);
    assert_eq!(
        (d.verdict, d.unverified_downstream),
        (Verdict::DryRunDeny, true)
    );
    let d = decide("{}");
    assert_eq!((d.verdict, d.unverified_downstream), (Verdict::Deny, true));
}
