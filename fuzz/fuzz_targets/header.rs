//! A whole request walked by the resolver (`trusted_proxies` and `trusted_hops`, X-Forwarded-For
//! and a single-address header, both `on_invalid` settings), compared with a plain, eager
//! reference implementation of docs/resolution.md written from the text of the contract, which
//! parses entries, trims them and matches trusted networks with its own code (`fuzz/reference.rs`,
//! std only), never the filter's; then the request is decided and its header plan built. Never panics; the client is always an address the chain
//! holds (never one made up), unknown, or the downstream address.
//!
//! Input layout: byte 0 picks trust/header/on_invalid, byte 1 the hop count or trusted set,
//! byte 2 the downstream address; the rest is header lines separated by '\n', each line's first
//! byte picking the header name and the remainder being its value.
#![no_main]

use std::net::IpAddr;

use client_ip_core::access::{Lists, Verdict};
use client_ip_core::addr::parse_socket_addr;
use client_ip_core::ipset::{parse_net, IpSet};
use client_ip_core::policy::{Downstream, Policy, Request};
use client_ip_core::resolve::{OnInvalid, Resolver, Trust};
use libfuzzer_sys::fuzz_target;

#[path = "../reference.rs"]
mod reference;

/// An address and its port, as the reference reads them.
type Addr = (IpAddr, Option<u16>);

const DOWNSTREAMS: &[&str] = &[
    "10.0.0.2:1",
    "203.0.113.5:4000",
    "[::ffff:10.0.0.3]:5",
    "[fd00::1]:7",
    "[2001:db8::5]:80",
    "127.0.0.1:9",
    "10.255.255.255:0",
    "192.168.0.1:3",
];

const TRUSTED_SETS: &[&[&str]] = &[
    &["10.0.0.0/8", "fd00::/8"],
    &["10.0.0.2"],
    &["0.0.0.0/0", "::/0"],
    &["::ffff:192.168.0.0/112", "127.0.0.0/8", "10.0.0.0/9"],
    &[],
];

const NAMES: &[&str] = &[
    "x-forwarded-for",
    "X-Forwarded-For",
    "x-real-ip",
    "X-REAL-IP",
    "cf-connecting-ip",
    ":authority",
    ":path",
    "x-other",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (mode, pick, ds) = (data[0], data[1], data[2]);
    let header = if mode & 2 == 0 {
        "x-forwarded-for"
    } else {
        "x-real-ip"
    };
    let on_invalid = if mode & 4 == 0 {
        OnInvalid::Unknown
    } else {
        OnInvalid::Downstream
    };
    let downstream_text = DOWNSTREAMS.get(ds as usize % (DOWNSTREAMS.len() + 1));
    let downstream = downstream_text.map(|s| parse_socket_addr(s).expect("test downstream"));
    let ref_downstream = downstream_text.map(|s| reference::entry(s).expect("test downstream"));
    let lines: Vec<(String, String)> = String::from_utf8_lossy(&data[3..])
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let name = NAMES[l.as_bytes()[0] as usize % NAMES.len()];
            let value = l.get(1..).unwrap_or("");
            (name.to_string(), value.to_string())
        })
        .collect();

    let (trust, ref_trust) = if mode & 1 == 0 {
        let nets = TRUSTED_SETS[pick as usize % TRUSTED_SETS.len()];
        let set = IpSet::from_nets(nets.iter().map(|n| parse_net(n).unwrap().0));
        (
            Trust::Proxies(set),
            Reference::Proxies(reference::Nets::parse(nets)),
        )
    } else {
        let n = u32::from(pick % 8) + 1;
        (Trust::Hops(n), Reference::Hops(n))
    };
    let resolver = Resolver::new(trust, header, on_invalid);
    let got = resolver.resolve(downstream, &lines);

    // The reference: build the whole chain eagerly, then apply the rule.
    let want = resolve(&ref_trust, header, on_invalid, ref_downstream, &lines);
    let got_client = got.client.map(|c| (c.ip(), c.port()));
    assert_eq!(
        (got_client, got.invalid),
        want,
        "lines {lines:?} downstream {downstream:?}"
    );

    // The client is the downstream address or an address written in the header: never another.
    if let Some(client) = got_client {
        let written = lines
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(header))
            .flat_map(|(_, v)| v.split(','))
            .filter_map(reference::entry)
            .any(|e| e == client);
        assert!(
            Some(client) == ref_downstream || written,
            "{client:?} came from nowhere"
        );
    }

    // The whole decision and the header plan, with an allow list in force.
    const ALLOW: [&str; 2] = ["203.0.113.0/24", "2001:db8::/32"];
    let allow = IpSet::from_nets(ALLOW.map(|n| parse_net(n).unwrap().0));
    let mut policy = Policy {
        resolver,
        ..Policy::default()
    };
    policy.access.lists = Lists::new(allow, IpSet::empty());
    let request = Request {
        downstream: Downstream {
            addr: downstream,
            origin: client_ip_core::policy::Origin::FilterState,
        },
        headers: &lines,
    };
    let decision = policy.decide(&request);
    assert_eq!(decision.client, got.client);
    let admitted = want
        .0
        .is_some_and(|c| reference::Nets::parse(&ALLOW).contains(c.0));
    assert_eq!(decision.verdict == Verdict::Allow, admitted, "{decision:?}");
    let plan = policy.header_plan(&request, &decision).to_vec();
    // x-real-ip is always rewritten: set to the client, or removed when unknown (the plan may
    // first remove other spellings of the filter's headers; the last edit of x-real-ip decides).
    let last = plan
        .iter()
        .rev()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-real-ip"));
    assert_eq!(
        last,
        Some(&("x-real-ip".to_string(), want.0.map(|c| c.0.to_string()))),
        "{plan:?}"
    );
});

/// The reference's trust: its own networks, or a hop count.
enum Reference {
    Proxies(reference::Nets),
    Hops(u32),
}

/// Spec §1 "Chain" and §2, eagerly: every element left of the downstream address, in wire order
/// (None for an element that is invalid as a whole: a repeated single-address header).
fn chain(header: &str, downstream: Addr, lines: &[(String, String)]) -> Vec<Option<String>> {
    let values: Vec<&str> = lines
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(header))
        .map(|(_, v)| v.as_str())
        .collect();
    let elements: Vec<String> = values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|e| reference::trim(e).to_string())
        .filter(|e| !e.is_empty())
        .collect();
    if header == "x-forwarded-for" {
        let mut out: Vec<Option<String>> = elements.into_iter().map(Some).collect();
        let last_is_downstream = out
            .last()
            .and_then(|e| e.as_deref())
            .and_then(reference::entry)
            .is_some_and(|e| e.0 == downstream.0);
        if last_is_downstream {
            out.pop();
        }
        out
    } else if values.len() > 1 || elements.len() > 1 {
        vec![None]
    } else {
        elements.into_iter().map(Some).collect()
    }
}

fn resolve(
    trust: &Reference,
    header: &str,
    on_invalid: OnInvalid,
    downstream: Option<Addr>,
    lines: &[(String, String)],
) -> (Option<Addr>, bool) {
    let Some(downstream) = downstream else {
        return (None, false);
    };
    let chain = chain(header, downstream, lines);
    let read = |e: &Option<String>| e.as_deref().and_then(reference::entry);
    let found: Option<Addr> = match trust {
        Reference::Proxies(nets) => {
            let mut current = downstream;
            let mut i = chain.len();
            loop {
                if !nets.contains(current.0) || i == 0 {
                    break Some(current);
                }
                i -= 1;
                match read(&chain[i]) {
                    Some(a) => current = a,
                    None => break None,
                }
            }
        }
        Reference::Hops(n) => {
            let n = *n as usize;
            if chain.len() < n {
                Some(downstream)
            } else {
                read(&chain[chain.len() - n])
            }
        }
    };
    match found {
        Some(c) => (Some(c), false),
        None => match on_invalid {
            OnInvalid::Unknown => (None, true),
            OnInvalid::Downstream => (Some(downstream), true),
        },
    }
}
