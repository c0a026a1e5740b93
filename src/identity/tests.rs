//! One test per rule of docs/private-link.md (kinds, text, malformed TLVs, reading routes).
use super::*;

fn aws(text: &str) -> Identity {
    Identity::parse_entry(text).unwrap()
}
fn b64(bytes: &[u8]) -> Vec<u8> {
    // A plain encoder for the tests (standard alphabet, padded).
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | b as u32) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}
fn aws_tlv(id: &str) -> Vec<u8> {
    let mut v = vec![0x01];
    v.extend_from_slice(id.as_bytes());
    v
}

#[test]
fn aws_tlv_subtype_0x01_then_the_vpce_id_is_aws_vpce_text() {
    let id = Identity::from_tlv(Kind::AwsVpce, &aws_tlv("vpce-0a1b2c3d4e5f60718")).unwrap();
    assert_eq!(id.text(), "aws-vpce:vpce-0a1b2c3d4e5f60718");
    assert_eq!(id, aws("aws-vpce:vpce-0a1b2c3d4e5f60718"));
    // 8 and 32 digits are the bounds.
    assert!(Identity::from_tlv(Kind::AwsVpce, &aws_tlv("vpce-0123abcd")).is_some());
    assert!(
        Identity::from_tlv(Kind::AwsVpce, &aws_tlv(&format!("vpce-{}", "f".repeat(32)))).is_some()
    );
}

#[test]
fn azure_tlv_subtype_0x01_then_little_endian_u32_is_azure_link_decimal() {
    let id = Identity::from_tlv(Kind::AzureLink, &[0x01, 0x40, 0xE2, 0x01, 0x00]).unwrap();
    assert_eq!(id.text(), "azure-link:123456");
    let max = Identity::from_tlv(Kind::AzureLink, &[0x01, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
    assert_eq!(max.text(), "azure-link:4294967295");
}

#[test]
fn gcp_tlv_big_endian_u64_is_gcp_psc_decimal() {
    let v = 49477946121388034u64.to_be_bytes();
    let id = Identity::from_tlv(Kind::GcpPsc, &v).unwrap();
    assert_eq!(id.text(), "gcp-psc:49477946121388034");
    assert_eq!(
        Identity::from_tlv(Kind::GcpPsc, &[0xFF; 8]).unwrap().text(),
        "gcp-psc:18446744073709551615"
    );
}

#[test]
fn tlv_of_wrong_subtype_is_invalid() {
    assert_eq!(
        Identity::from_tlv(Kind::AwsVpce, b"\x02vpce-0a1b2c3d4e5f60718"),
        None
    );
    assert_eq!(
        Identity::from_tlv(Kind::AwsVpce, b"vpce-0a1b2c3d4e5f60718"),
        None
    );
    assert_eq!(
        Identity::from_tlv(Kind::AzureLink, &[0x02, 1, 2, 3, 4]),
        None
    );
}

#[test]
fn tlv_of_wrong_length_is_invalid() {
    assert_eq!(Identity::from_tlv(Kind::AzureLink, &[0x01, 1, 2, 3]), None);
    assert_eq!(
        Identity::from_tlv(Kind::AzureLink, &[0x01, 1, 2, 3, 4, 5]),
        None
    );
    assert_eq!(Identity::from_tlv(Kind::GcpPsc, &[1; 7]), None);
    assert_eq!(Identity::from_tlv(Kind::GcpPsc, &[1; 9]), None);
    assert_eq!(
        Identity::from_tlv(Kind::AwsVpce, &aws_tlv("vpce-0123abc")),
        None
    );
    assert_eq!(Identity::from_tlv(Kind::AwsVpce, &[0x01]), None);
    assert_eq!(Identity::from_tlv(Kind::GcpPsc, &[]), None);
}

#[test]
fn oversized_tlv_is_invalid() {
    let long = aws_tlv(&format!("vpce-{}", "a".repeat(33)));
    assert_eq!(Identity::from_tlv(Kind::AwsVpce, &long), None);
    let huge = vec![0x41; 65_000];
    for kind in Kind::ALL {
        assert_eq!(
            read_value(kind, Route::TlvFilterState, Some(&huge)),
            TlvRead::Invalid
        );
        assert_eq!(
            read_value(kind, Route::TlvFilterState, Some(&b64(&huge))),
            TlvRead::Invalid
        );
    }
}

#[test]
fn aws_id_that_is_not_lowercase_hex_ascii_is_invalid() {
    for bad in [
        "vpce-0A1B2C3D4E5F60718",
        "vpce-0a1b2c3d4e5f6071g",
        "vpce-0a1b2c3d 4e5f6071",
        "vpce-0a1b2c3d4e5f6071\n",
        "vpce-0a1b2c3d4e5f6071\0",
        "vpce-0a1b2c3d4e5f607é",
        "vpce_0a1b2c3d4e5f60718",
    ] {
        assert_eq!(
            Identity::from_tlv(Kind::AwsVpce, &aws_tlv(bad)),
            None,
            "{bad:?}"
        );
    }
    let mut non_ascii = aws_tlv("vpce-0a1b2c3d4e5f6071");
    non_ascii.push(0xFF);
    assert_eq!(Identity::from_tlv(Kind::AwsVpce, &non_ascii), None);
}

#[test]
fn reading_base64_filter_state_gives_every_kind() {
    let aws_v = aws_tlv("vpce-0a1b2c3d4e5f60718");
    let azure_v = [0x01, 0x40, 0xE2, 0x01, 0x00];
    let gcp_v = 49477946121388034u64.to_be_bytes();
    for route in [Route::TlvFilterState, Route::MetadataCopy] {
        let read = |kind, v: &[u8]| read_value(kind, route, Some(&b64(v)));
        assert_eq!(
            read(Kind::AwsVpce, &aws_v),
            TlvRead::Valid(aws("aws-vpce:vpce-0a1b2c3d4e5f60718"))
        );
        assert_eq!(
            read(Kind::AzureLink, &azure_v),
            TlvRead::Valid(Identity::AzureLink(123456))
        );
        assert_eq!(
            read(Kind::GcpPsc, &gcp_v),
            TlvRead::Valid(Identity::GcpPsc(49477946121388034))
        );
        // A base64 value of the wrong shape is invalid.
        assert_eq!(read(Kind::AzureLink, &[0x02, 1, 2, 3, 4]), TlvRead::Invalid);
        assert_eq!(read(Kind::GcpPsc, &[1, 2, 3]), TlvRead::Invalid);
    }
}

#[test]
fn without_base64_only_aws_is_read_and_azure_or_gcp_is_invalid() {
    let aws_v = aws_tlv("vpce-0a1b2c3d4e5f60718");
    for route in [Route::TlvFilterState, Route::MetadataCopy] {
        assert_eq!(
            read_value(Kind::AwsVpce, route, Some(&aws_v)),
            TlvRead::Valid(aws("aws-vpce:vpce-0a1b2c3d4e5f60718"))
        );
        // What Envoy 1.40 hands over for Azure LinkID 123456 without BASE64 (0xE2 became
        // '!'): read as it is it would be LinkID 74048, another endpoint.
        assert_eq!(
            read_value(Kind::AzureLink, route, Some(b"\x01@!\x01\x00")),
            TlvRead::Invalid
        );
        // Even bytes that happen to be valid UTF-8 are not trusted.
        assert_eq!(
            read_value(
                Kind::AzureLink,
                route,
                Some(&[0x01, 0x40, 0x62, 0x01, 0x00])
            ),
            TlvRead::Invalid
        );
        assert_eq!(
            read_value(Kind::GcpPsc, route, Some(&7u64.to_be_bytes())),
            TlvRead::Invalid
        );
        // An AWS id with a replaced byte fails its own check.
        assert_eq!(
            read_value(Kind::AwsVpce, route, Some(b"\x01vpce-0a1b2c3d4e5f6071!")),
            TlvRead::Invalid
        );
    }
}

#[test]
fn missing_tlv_reads_as_absent() {
    for kind in Kind::ALL {
        assert_eq!(
            read_value(kind, Route::TlvFilterState, None),
            TlvRead::Absent
        );
        assert_eq!(
            read_value(kind, Route::TlvFilterState, Some(b"")),
            TlvRead::Absent
        );
        assert_eq!(
            read_value(kind, Route::MetadataCopy, Some(b"-")),
            TlvRead::Absent
        );
        assert_eq!(read_value(kind, Route::MetadataCopy, None), TlvRead::Absent);
    }
    // On the listener filter's own filter state, "-" is a value (and not a valid one).
    assert_eq!(
        read_value(Kind::AwsVpce, Route::TlvFilterState, Some(b"-")),
        TlvRead::Invalid
    );
}

#[test]
fn malformed_base64_is_invalid() {
    for bad in [&b"AXZwY2Ut!"[..], b"A", b"AXZ=wY2U", b"AQ==AQ==", b"AR=="] {
        assert_eq!(
            read_value(Kind::AwsVpce, Route::TlvFilterState, Some(bad)),
            TlvRead::Invalid,
            "{bad:?}"
        );
    }
    assert_eq!(decode_base64(b"AQIDBA=="), Some(vec![1, 2, 3, 4]));
    assert_eq!(decode_base64(b"AQIDBA"), Some(vec![1, 2, 3, 4]));
    assert_eq!(decode_base64(b"AQID"), Some(vec![1, 2, 3]));
    assert_eq!(decode_base64(b""), Some(vec![]));
    assert_eq!(decode_base64(b"AQIDB==="), None);
}

#[test]
fn connection_identity_is_the_first_valid_in_reading_order_and_invalid_is_flagged() {
    let a = TlvRead::Valid(Identity::AzureLink(1));
    let g = TlvRead::Valid(Identity::GcpPsc(2));
    let link = Link::from_reads([TlvRead::Invalid, a, g]);
    assert_eq!(link.identity, Some(Identity::AzureLink(1)));
    assert!(link.invalid);
    let link = Link::from_reads([TlvRead::Absent, TlvRead::Absent, g]);
    assert_eq!(
        link,
        Link {
            identity: Some(Identity::GcpPsc(2)),
            invalid: false
        }
    );
    assert_eq!(Link::from_reads([]), Link::default());
}

#[test]
fn identity_entries_are_canonical_text() {
    assert_eq!(
        aws("aws-vpce:vpce-0a1b2c3d4e5f60718").text(),
        "aws-vpce:vpce-0a1b2c3d4e5f60718"
    );
    assert_eq!(aws("azure-link:0"), Identity::AzureLink(0));
    assert_eq!(
        aws("gcp-psc:49477946121388034"),
        Identity::GcpPsc(49477946121388034)
    );
    for (bad, kind) in [
        ("aws-vpce:vpce-0A1B2C3D", Kind::AwsVpce),
        ("aws-vpce:0a1b2c3d4e5f60718", Kind::AwsVpce),
        ("aws-vpce:vpce-0a1b2c3", Kind::AwsVpce),
        ("azure-link:4294967296", Kind::AzureLink),
        ("azure-link:0123", Kind::AzureLink),
        ("azure-link:+1", Kind::AzureLink),
        ("azure-link:", Kind::AzureLink),
        ("gcp-psc:18446744073709551616", Kind::GcpPsc),
        ("gcp-psc:-1", Kind::GcpPsc),
        ("gcp-psc:1 ", Kind::GcpPsc),
    ] {
        assert_eq!(
            Identity::parse_entry(bad),
            Err(EntryError::Malformed(kind)),
            "{bad}"
        );
    }
    assert_eq!(
        Identity::parse_entry("10.0.0.0/8"),
        Err(EntryError::NotAnIdentity)
    );
    assert_eq!(
        Identity::parse_entry("AWS-VPCE:vpce-0a1b2c3d"),
        Err(EntryError::NotAnIdentity)
    );
}

/// Any bytes, under either route: an identity read is one whose text is header-safe ASCII and
/// reads back as the same identity, whose TLV encodes back to the bytes decoded.
#[test]
fn any_value_reads_as_absent_invalid_or_an_identity_whose_text_round_trips() {
    let mut rng = crate::testutil::Rng(0x5eed_1d3a);
    let seeds: [&[u8]; 4] = [
        b"\x01vpce-0a1b2c3d4e5f60718",
        &[0x01, 0x40, 0xE2, 0x01, 0x00],
        &[0, 0xAF, 0xC7, 0xEE, 0x0A, 0xC8, 0, 2],
        b"",
    ];
    let mut valid = 0;
    for i in 0..20_000 {
        let mut bytes = seeds[i % seeds.len()].to_vec();
        for _ in 0..rng.below(4) {
            match rng.below(3) {
                0 if !bytes.is_empty() => {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
                1 => bytes.push(b"0123456789abcdef!-\x01\xff"[rng.below(20) as usize]),
                _ => {
                    bytes.pop();
                }
            }
        }
        let encoded = b64(&bytes);
        for kind in Kind::ALL {
            for route in [Route::TlvFilterState, Route::MetadataCopy] {
                for value in [&bytes, &encoded] {
                    if let TlvRead::Valid(id) = read_value(kind, route, Some(value)) {
                        valid += 1;
                        let text = id.text();
                        assert!(text.bytes().all(|b| b.is_ascii_graphic()), "{text:?}");
                        assert_eq!(Identity::parse_entry(&text), Ok(id));
                        assert_eq!(id.kind(), kind);
                        assert_eq!(Identity::from_tlv(kind, &bytes), Some(id), "{value:?}");
                    }
                }
            }
        }
    }
    assert!(
        valid > 1000,
        "too few valid reads ({valid}) for the test to mean much"
    );
}

#[test]
fn identity_set_matches_only_listed_identities() {
    let set = IdentitySet::from_identities([
        aws("aws-vpce:vpce-0a1b2c3d4e5f60718"),
        Identity::AzureLink(5),
        Identity::AzureLink(5),
    ]);
    assert!(set.contains(Some(&aws("aws-vpce:vpce-0a1b2c3d4e5f60718"))));
    assert!(set.contains(Some(&Identity::AzureLink(5))));
    assert!(!set.contains(Some(&Identity::GcpPsc(5))));
    assert!(!set.contains(Some(&aws("aws-vpce:vpce-0a1b2c3d4e5f6071"))));
    assert!(!set.contains(None));
    assert_eq!(
        set.kinds(),
        Kinds::default().with(Kind::AwsVpce).with(Kind::AzureLink)
    );
}

// -- Lists, rules and configuration (docs/private-link.md "Lists", "Forwarding and logs") --------------

use crate::access::Verdict;
use crate::config::parse;
use crate::policy::{Downstream, Policy, Request};

const VPCE_A: &str = "aws-vpce:vpce-0a1b2c3d4e5f60718";
const VPCE_B: &str = "aws-vpce:vpce-11112222333344445";

fn policy(json: &str) -> Policy {
    parse(json.as_bytes()).unwrap().0
}
use crate::testutil::config_error as error;
/// The verdict for a request from `downstream` (no forwarding header) whose connection
/// carried `link` (an identity entry's text), on `path`.
fn verdict_at(p: &Policy, downstream: &str, link: Option<&str>, path: &str) -> Verdict {
    let headers = vec![
        (":authority".to_string(), "example.com".to_string()),
        (":path".to_string(), path.to_string()),
    ];
    let request = Request {
        downstream: Downstream::from_filter_state(downstream),
        headers: &headers,
    };
    let link = Link {
        identity: link.map(|t| Identity::parse_entry(t).unwrap()),
        invalid: false,
    };
    p.decide_with_link(&request, link).verdict
}
fn verdict(p: &Policy, downstream: &str, link: Option<&str>) -> Verdict {
    verdict_at(p, downstream, link, "/")
}

#[test]
fn identity_entry_matches_when_the_connection_carried_that_identity() {
    let p = policy(&format!(r#"{{"access": {{"allow": ["{VPCE_A}"]}}}}"#));
    assert_eq!(verdict(&p, "10.0.0.1:1", Some(VPCE_A)), Verdict::Allow);
    assert_eq!(verdict(&p, "10.0.0.1:1", Some(VPCE_B)), Verdict::Deny);
    assert_eq!(
        verdict(&p, "10.0.0.1:1", Some("azure-link:1")),
        Verdict::Deny
    );
    // An allow list holding only identities is in force: no identity, refused.
    assert_eq!(verdict(&p, "10.0.0.1:1", None), Verdict::Deny);
}

#[test]
fn allow_list_admits_when_the_address_or_the_identity_is_listed() {
    let p = policy(&format!(
        r#"{{"access": {{"allow": ["203.0.113.0/24", "{VPCE_A}", "gcp-psc:7"]}}}}"#
    ));
    assert_eq!(verdict(&p, "203.0.113.9:1", None), Verdict::Allow);
    assert_eq!(verdict(&p, "203.0.113.9:1", Some(VPCE_B)), Verdict::Allow);
    assert_eq!(verdict(&p, "198.51.100.1:1", Some(VPCE_A)), Verdict::Allow);
    assert_eq!(
        verdict(&p, "198.51.100.1:1", Some("gcp-psc:7")),
        Verdict::Allow
    );
    assert_eq!(
        verdict(&p, "198.51.100.1:1", Some("gcp-psc:8")),
        Verdict::Deny
    );
    assert_eq!(verdict(&p, "198.51.100.1:1", None), Verdict::Deny);
}

#[test]
fn deny_list_refuses_when_the_address_or_the_identity_is_listed_even_when_allowed() {
    let p = policy(&format!(
        r#"{{"access": {{"allow": ["203.0.113.0/24", "{VPCE_A}"], "deny": ["{VPCE_B}", "203.0.113.66"]}}}}"#
    ));
    assert_eq!(verdict(&p, "203.0.113.9:1", Some(VPCE_B)), Verdict::Deny);
    assert_eq!(verdict(&p, "203.0.113.66:1", Some(VPCE_A)), Verdict::Deny);
    assert_eq!(verdict(&p, "203.0.113.9:1", Some(VPCE_A)), Verdict::Allow);
    // A deny list of identities alone: everyone else passes.
    let p = policy(r#"{"access": {"deny": ["azure-link:42"]}}"#);
    assert_eq!(
        verdict(&p, "8.8.8.8:1", Some("azure-link:42")),
        Verdict::Deny
    );
    assert_eq!(
        verdict(&p, "8.8.8.8:1", Some("azure-link:43")),
        Verdict::Allow
    );
    assert_eq!(verdict(&p, "8.8.8.8:1", None), Verdict::Allow);
}

#[test]
fn match_does_not_apply_to_identity_entries() {
    let a = aws(VPCE_A);
    for m in ["client", "downstream"] {
        let p = policy(&format!(
            r#"{{"access": {{"match": "{m}", "allow": ["10.9.0.0/16", "{VPCE_A}"]}}}}"#
        ));
        // Neither address is listed (or even known): the identity alone admits.
        let decide = |link: Option<&Identity>| p.access.decide_linked(None, None, link, "h", "/").0;
        assert_eq!(decide(Some(&a)), Verdict::Allow, "match {m}");
        assert_eq!(decide(None), Verdict::Deny, "match {m}");
        let ip = "203.0.113.1".parse().ok();
        assert_eq!(
            p.access.decide_linked(ip, ip, Some(&a), "h", "/").0,
            Verdict::Allow
        );
    }
}

#[test]
fn rules_lists_may_hold_identity_entries() {
    let p = policy(&format!(
        r#"{{"access": {{"allow": ["0.0.0.0/0"],
            "rules": [{{"name": "admin", "path_prefixes": ["/admin"], "allow": ["{VPCE_A}"], "deny": ["azure-link:9"]}}]}}}}"#
    ));
    assert_eq!(verdict_at(&p, "8.8.8.8:1", None, "/admin"), Verdict::Deny);
    assert_eq!(
        verdict_at(&p, "8.8.8.8:1", Some(VPCE_A), "/admin"),
        Verdict::Allow
    );
    assert_eq!(
        verdict_at(&p, "8.8.8.8:1", Some(VPCE_B), "/admin"),
        Verdict::Deny
    );
    assert_eq!(verdict_at(&p, "8.8.8.8:1", None, "/"), Verdict::Allow);
    assert_eq!(
        p.link.kinds,
        Kinds::default().with(Kind::AwsVpce).with(Kind::AzureLink)
    );
}

#[test]
fn identity_entries_in_trusted_proxies_are_an_error() {
    assert_eq!(
        error(&format!(r#"{{"client_ip": {{"trusted_proxies": ["10.0.0.0/8", "{VPCE_A}"]}}}}"#)),
        format!("client_ip.trusted_proxies[1]: \"{VPCE_A}\" is an identity entry; client_ip.trusted_proxies holds only addresses and CIDRs")
    );
}

#[test]
fn malformed_identity_entry_is_an_error_with_its_key_path() {
    assert_eq!(
        error(r#"{"access": {"allow": ["10.0.0.0/8", "aws-vpce:vpce-0A1B2C3D"]}}"#),
        "access.allow[1]: \"aws-vpce:vpce-0A1B2C3D\" is not an identity (aws-vpce:vpce- and 8 to 32 lowercase hex digits)"
    );
    assert_eq!(
        error(r#"{"access": {"rules": [{"name": "r", "deny": ["azure-link:4294967296"]}]}}"#),
        "access.rules[0].deny[0]: \"azure-link:4294967296\" is not an identity (azure-link: and a LinkID from 0 to 4294967295)"
    );
    assert!(error(r#"{"access": {"deny": ["gcp-psc:x"]}}"#)
        .starts_with("access.deny[0]: \"gcp-psc:x\" is not an identity (gcp-psc:"));
    // Anything else is still "not an IP address or CIDR".
    assert_eq!(
        error(r#"{"access": {"allow": ["vpce-0a1b2c3d"]}}"#),
        "access.allow[0]: \"vpce-0a1b2c3d\" is not an IP address or CIDR"
    );
}

#[test]
fn link_header_is_a_header_name_the_filter_may_write_and_reads_every_kind() {
    let p = policy(r#"{"forward": {"link_header": "X-Client-Link"}}"#);
    assert_eq!(p.link.header.as_deref(), Some("x-client-link"));
    assert_eq!(p.link.kinds, Kinds::ALL);
    assert_eq!(
        error(r#"{"forward": {"link_header": "x client link"}}"#),
        "forward.link_header: \"x client link\" is not a valid HTTP header name"
    );
    assert!(error(r#"{"forward": {"link_header": "host"}}"#)
        .starts_with("forward.link_header: \"host\""));
    assert!(error(r#"{"forward": {"link_header": 7}}"#).starts_with("forward.link_header: 7"));
    assert_eq!(
        error(r#"{"forward": {"headers": ["x-real-ip"], "link_header": "X-Real-IP"}}"#),
        "forward.link_header: \"X-Real-IP\" is also in forward.headers or forward.port_header: a header holds one thing"
    );
    assert!(error(r#"{"forward": {"link_header": "x-forwarded-for"}}"#)
        .contains("managed by forward.x_forwarded_for"));
}

#[test]
fn default_configuration_reads_no_identity() {
    let p = policy("");
    assert!(p.link.kinds.is_empty());
    assert_eq!(p.link.header, None);
    let p = policy(
        r#"{"access": {"allow": ["10.0.0.0/8"], "rules": [{"name": "a", "deny": ["::1"]}]}}"#,
    );
    assert!(p.link.kinds.is_empty());
    let p = policy(&format!(r#"{{"access": {{"deny": ["{VPCE_A}"]}}}}"#));
    assert_eq!(p.link.kinds, Kinds::default().with(Kind::AwsVpce));
}

#[test]
fn each_kind_has_its_copy_under_client_ip_and_its_tlv_key() {
    for kind in Kind::ALL {
        assert_eq!(kind.copy_key(), format!("client_ip.{}", kind.tlv_key()));
    }
}

#[test]
fn a_read_is_described_with_at_most_96_bytes_of_its_value_escaped() {
    let long = [b'\n'; 200];
    let read = read_value(Kind::GcpPsc, Route::TlvFilterState, Some(&long));
    let line = describe_read(Kind::GcpPsc, Route::TlvFilterState, &long, &read).to_string();
    assert_eq!(
        line,
        format!(
            "gcp_psc_id (TlvFilterState, 200 bytes): \"{}\" is Invalid",
            "\\n".repeat(96)
        )
    );
    let read = read_value(Kind::AwsVpce, Route::MetadataCopy, Some(b"-"));
    assert_eq!(
        describe_read(Kind::AwsVpce, Route::MetadataCopy, b"-", &read).to_string(),
        "aws_vpce_id (MetadataCopy, 1 bytes): \"-\" is Absent"
    );
}
