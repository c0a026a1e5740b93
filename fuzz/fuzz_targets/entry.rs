//! One forwarding-header entry: `addr::parse_entry` on any text. Never panics; the result is an
//! address (canonical, printable, re-parseable to itself) or an invalid entry, and it is exactly
//! what a plain reference of the contract's grammar (docs/resolution.md "Entry") says.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use client_ip_filter::addr::{parse_entry, trim_ows, AddrText};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The filter reads header values as bytes and converts them lossily (src/filter.rs).
    let text = String::from_utf8_lossy(data);
    check(&text);
});

/// The contract's grammar, written plainly: `a.b.c.d`, `a.b.c.d:port`, a bare IPv6 address,
/// `[ipv6]`, `[ipv6]:port`, an IPv6 address optionally with a `%zone` of unreserved characters;
/// a port is 1-5 ASCII digits up to 65535 (0 means none); mapped IPv4 is IPv4.
fn reference(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = text.trim_matches([' ', '\t']);
    let port = |p: &str| -> Option<u16> {
        let ok = (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
        ok.then(|| p.parse::<u16>().ok()).flatten()
    };
    let v6 = |a: &str| -> Option<Ipv6Addr> {
        let (addr, zone) = match a.find('%') {
            Some(i) => (&a[..i], Some(&a[i + 1..])),
            None => (a, None),
        };
        if let Some(z) = zone {
            let unreserved = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
            if z.is_empty() || !z.bytes().all(unreserved) {
                return None;
            }
        }
        addr.parse().ok()
    };
    let (ip, p) = if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_at(rest.find(']')?);
        let after = &after[1..];
        let p = if after.is_empty() {
            None
        } else {
            Some(port(after.strip_prefix(':')?)?)
        };
        (IpAddr::V6(v6(inner)?), p)
    } else {
        match s.matches(':').count() {
            0 => (IpAddr::V4(s.parse().ok()?), None),
            1 => {
                let (a, p) = s.split_once(':')?;
                (IpAddr::V4(a.parse().ok()?), Some(port(p)?))
            }
            _ => (IpAddr::V6(v6(s)?), None),
        }
    };
    let ip = match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    };
    Some((ip, p.filter(|&p| p != 0)))
}

fn check(text: &str) {
    let trimmed = trim_ows(text);
    let got = parse_entry(text).ok().map(|a| (a.ip(), a.port()));
    assert_eq!(got, reference(text), "{text:?}");
    match parse_entry(text) {
        Ok(addr) => {
            let ip = addr.ip();
            // Canonical: an IPv4-mapped IPv6 address is always folded to IPv4.
            if let IpAddr::V6(v6) = ip {
                assert!(v6.to_ipv4_mapped().is_none(), "{text:?} gave mapped {v6}");
            }
            // Port 0 is "no port".
            assert_ne!(addr.port(), Some(0), "{text:?}");
            // Only ASCII text is ever an address (non-ASCII digits, U+FFFD: invalid).
            assert!(trimmed.is_ascii(), "{text:?} accepted");
            // The address text is what std prints, and reads back as the same address.
            let shown = addr.text();
            assert_eq!(shown.as_str(), ip.to_string(), "{text:?}");
            assert_eq!(AddrText::of(ip).as_str(), shown.as_str());
            let again = parse_entry(shown.as_str()).expect("address text re-parses");
            assert_eq!((again.ip(), again.port()), (ip, None), "{text:?}");
            // IPv4 is accepted exactly as std accepts it: dotted quad, no leading zeros, no
            // trailing dot, four octets.
            if !trimmed.contains([':', '[']) {
                let v4: Ipv4Addr = trimmed.parse().expect("bare IPv4 entry is std's IPv4");
                assert_eq!(ip, IpAddr::V4(v4));
            }
        }
        Err(_) => {
            // Whatever std reads as an address is an entry (then folded to canonical form).
            if let Ok(ip) = trimmed.parse::<IpAddr>() {
                panic!("{text:?} rejected, but std reads {ip}");
            }
            // Same for std's socket-address forms with a 1-5 digit port other than those
            // above 65535 (std takes any number of digits; the filter caps at 5).
            if let Ok(sa) = trimmed.parse::<std::net::SocketAddr>() {
                let port_text = trimmed.rsplit(':').next().unwrap_or("");
                let has_scope = trimmed.contains('%');
                if port_text.len() <= 5 && !has_scope {
                    panic!("{text:?} rejected, but std reads {sa}");
                }
            }
        }
    }
}
