//! One forwarding-header entry: `addr::parse_entry` on any text. Never panics; the result is an
//! address (canonical, printable, re-parseable to itself) or an invalid entry, and it is exactly
//! what a plain reference of the contract's grammar (docs/resolution.md "Entry") says: the
//! reference (`fuzz/reference.rs`) uses the standard library only, not the filter's parsing or
//! trimming.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use client_ip_core::addr::{parse_entry, AddrText};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)] // the networks part is the header target's
#[path = "../reference.rs"]
mod reference;

fuzz_target!(|data: &[u8]| {
    // The filter reads header values as bytes and converts them lossily (adapters/proxy-wasm/src/host.rs `text`).
    let text = String::from_utf8_lossy(data);
    check(&text);
});

fn check(text: &str) {
    let trimmed = reference::trim(text);
    let got = parse_entry(text).ok().map(|a| (a.ip(), a.port()));
    assert_eq!(got, reference::entry(text), "{text:?}");
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
