//! The fuzz targets' reference, written from the contract's grammar (docs/resolution.md "Entry",
//! docs/access.md lists) with the standard library only: none of the filter's own parsing,
//! trimming or set code, so that a bug there cannot hide in the oracle too. Included by the
//! targets with `#[path]`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An entry without the optional whitespace (spaces and tabs) around it.
pub fn trim(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        v4 => v4,
    }
}

/// One forwarding-header entry: `a.b.c.d`, `a.b.c.d:port`, a bare IPv6 address, `[ipv6]`,
/// `[ipv6]:port`, an IPv6 address optionally with a `%zone` of unreserved characters; a port is
/// 1-5 ASCII digits up to 65535 (0 means none); mapped IPv4 is IPv4. The address and its port.
pub fn entry(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let s = trim(text);
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
            0 => (IpAddr::V4(s.parse::<Ipv4Addr>().ok()?), None),
            1 => {
                let (a, p) = s.split_once(':')?;
                (IpAddr::V4(a.parse().ok()?), Some(port(p)?))
            }
            _ => (IpAddr::V6(v6(s)?), None),
        }
    };
    Some((canonical(ip), p.filter(|&p| p != 0)))
}

/// A list of networks as the contract reads them: CIDRs or single addresses, host bits ignored;
/// an IPv6 network inside `::ffff:0:0/96` with a prefix of 96 or more is the IPv4 network it maps.
pub struct Nets(Vec<(IpAddr, u8)>);

impl Nets {
    /// The networks of `texts` (each `addr/len` or `addr`); panics on text that is neither (the
    /// targets' lists are fixed and valid).
    pub fn parse(texts: &[&str]) -> Nets {
        Nets(
            texts
                .iter()
                .map(|t| {
                    let (addr, len) = t.split_once('/').unwrap_or((t, ""));
                    let ip: IpAddr = addr.parse().expect("reference network");
                    let full = if ip.is_ipv4() { 32 } else { 128 };
                    let len = if len.is_empty() {
                        full
                    } else {
                        len.parse().expect("prefix")
                    };
                    match ip {
                        IpAddr::V6(a) if len >= 96 && a.to_ipv4_mapped().is_some() => {
                            (IpAddr::V4(a.to_ipv4_mapped().unwrap()), len - 96)
                        }
                        _ => (ip, len),
                    }
                })
                .collect(),
        )
    }

    /// Whether a network holds `ip` (a mapped address is looked up as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|&(net, len)| match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if len == 0 {
                    0
                } else {
                    u128::MAX << (128 - len)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        })
    }
}
