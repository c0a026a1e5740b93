//! Addresses as the filter sees them: one canonical form for every IP (an IPv4-mapped IPv6
//! address *is* its IPv4 address), parsing of forwarding-header entries and of Envoy's socket
//! address text, and allocation-free address text for headers and logs.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Folds an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) into the IPv4 address it carries.
/// Every other address, including the deprecated IPv4-compatible form `::a.b.c.d`, is unchanged.
#[inline]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// An IP address in canonical form with the port it was seen with, when there was one.
/// Port 0 means "no port" (Envoy reports an X-Forwarded-For-derived address with port 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientAddr {
    ip: IpAddr,
    port: Option<u16>,
}

impl ClientAddr {
    /// Builds an address, folding mapped IPv4 and treating port 0 as no port.
    pub fn new(ip: IpAddr, port: Option<u16>) -> Self {
        ClientAddr {
            ip: canonical(ip),
            port: port.filter(|&p| p != 0),
        }
    }

    /// The address, canonical (never an IPv4-mapped IPv6 address).
    #[inline]
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The port, when one was seen and it was not 0.
    #[inline]
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The address text of the spec: dotted quad or RFC 5952 IPv6, no brackets, port or zone.
    pub fn text(&self) -> AddrText {
        AddrText::of(self.ip)
    }
}

impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.ip.fmt(f)
    }
}

/// Why a piece of text is not an address. Carried for logs and tests; the filter only needs
/// to know that an entry is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidAddr {
    /// Nothing but spaces or tabs.
    Empty,
    /// Not an IPv4 or IPv6 address in any accepted form (`unknown`, a host name, garbage).
    NotAnAddress,
    /// An address followed by a port that is not 1 to 5 ASCII digits up to 65535.
    BadPort,
}

impl fmt::Display for InvalidAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidAddr::Empty => "empty",
            InvalidAddr::NotAnAddress => "not an IP address",
            InvalidAddr::BadPort => "bad port",
        })
    }
}

/// Trims the spaces and tabs around a forwarding-header element (and nothing else).
#[inline]
pub fn trim_ows(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Parses one forwarding-header entry (already split at commas; surrounding spaces and tabs
/// are trimmed here). Accepted forms: `a.b.c.d`, `a.b.c.d:port`, a bare IPv6 address,
/// `[ipv6]`, `[ipv6]:port`; an IPv6 address may carry a `%zone`, which is dropped.
/// A bare IPv6 address is never split at a colon. IPv4 octets with leading zeros
/// (`010.0.0.1`) are rejected: they are ambiguous (octal to some parsers, decimal to others).
pub fn parse_entry(entry: &str) -> Result<ClientAddr, InvalidAddr> {
    let s = trim_ows(entry);
    if s.is_empty() {
        return Err(InvalidAddr::Empty);
    }
    if let Some(rest) = s.strip_prefix('[') {
        let close = rest.find(']').ok_or(InvalidAddr::NotAnAddress)?;
        let ip = parse_ipv6_with_zone(&rest[..close])?;
        let port = match &rest[close + 1..] {
            "" => None,
            after => Some(parse_port(
                after.strip_prefix(':').ok_or(InvalidAddr::NotAnAddress)?,
            )?),
        };
        return Ok(ClientAddr::new(IpAddr::V6(ip), port));
    }
    match s.find(':') {
        None => parse_ipv4(s).map(|ip| ClientAddr::new(IpAddr::V4(ip), None)),
        // Exactly one colon: only `a.b.c.d:port` has that shape (an IPv6 address has two or more).
        Some(i) if !s[i + 1..].contains(':') => {
            let ip = parse_ipv4(&s[..i])?;
            let port = parse_port(&s[i + 1..])?;
            Ok(ClientAddr::new(IpAddr::V4(ip), Some(port)))
        }
        Some(_) => parse_ipv6_with_zone(s).map(|ip| ClientAddr::new(IpAddr::V6(ip), None)),
    }
}

/// Parses Envoy's text for a socket address, as in the `source.address` property and the
/// `%DOWNSTREAM_REMOTE_ADDRESS%` filter state: `1.2.3.4:5`, `[2001:db8::1]:5`, or an address
/// without a port. A pipe path or anything else is not an address.
pub fn parse_socket_addr(text: &str) -> Result<ClientAddr, InvalidAddr> {
    parse_entry(text)
}

fn parse_ipv4(s: &str) -> Result<Ipv4Addr, InvalidAddr> {
    // std's parser takes ASCII digits only and refuses leading zeros, trailing dots and extra octets.
    s.parse::<Ipv4Addr>().map_err(|_| InvalidAddr::NotAnAddress)
}

fn parse_ipv6_with_zone(s: &str) -> Result<Ipv6Addr, InvalidAddr> {
    let addr = match s.split_once('%') {
        Some((addr, zone)) if is_zone(zone) => addr,
        Some(_) => return Err(InvalidAddr::NotAnAddress),
        None => s,
    };
    addr.parse::<Ipv6Addr>()
        .map_err(|_| InvalidAddr::NotAnAddress)
}

/// A zone id (RFC 6874 / RFC 4007): a non-empty run of unreserved characters.
fn is_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn parse_port(s: &str) -> Result<u16, InvalidAddr> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidAddr::BadPort);
    }
    s.parse::<u16>().map_err(|_| InvalidAddr::BadPort)
}

/// Address text on the stack: the longest IPv6 text is 39 bytes (45 with a dotted tail, which the
/// canonical form never has beyond `::ffff:` addresses, themselves folded to IPv4).
#[derive(Clone, Copy)]
pub struct AddrText {
    buf: [u8; 48],
    len: u8,
}

impl AddrText {
    /// Formats an address (canonical form first) without allocating.
    pub fn of(ip: IpAddr) -> Self {
        let mut text = AddrText {
            buf: [0; 48],
            len: 0,
        };
        // Cannot fail: the buffer holds any address text.
        let _ = write!(text, "{}", canonical(ip));
        text
    }

    /// Formats a port without allocating.
    pub fn port(port: u16) -> Self {
        let mut text = AddrText {
            buf: [0; 48],
            len: 0,
        };
        let _ = write!(text, "{port}");
        text
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only ever written through fmt::Write with &str pieces, so always UTF-8.
        std::str::from_utf8(&self.buf[..self.len as usize]).unwrap_or("")
    }
}

impl fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = self.len as usize;
        let end = start + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[start..end].copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Debug for AddrText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for AddrText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, Option<u16>) {
        let a = parse_entry(s).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"));
        (a.to_string(), a.port())
    }

    #[test]
    fn entry_ipv4_with_and_without_port() {
        assert_eq!(ok("203.0.113.7"), ("203.0.113.7".into(), None));
        assert_eq!(ok("203.0.113.7:8443"), ("203.0.113.7".into(), Some(8443)));
        assert_eq!(ok(" \t203.0.113.7 "), ("203.0.113.7".into(), None));
    }

    #[test]
    fn entry_ipv6_forms_are_rfc5952_text() {
        assert_eq!(ok("2001:DB8:0:0::1"), ("2001:db8::1".into(), None));
        assert_eq!(ok("[2001:db8::1]"), ("2001:db8::1".into(), None));
        assert_eq!(ok("[2001:db8::1]:443"), ("2001:db8::1".into(), Some(443)));
        assert_eq!(ok("2001:db8:0:0:0:0:0:1"), ("2001:db8::1".into(), None));
    }

    #[test]
    fn entry_bare_ipv6_is_never_split_at_a_colon() {
        // Would be "2001:db8::" port 1 if split at the last colon.
        assert_eq!(ok("2001:db8::1"), ("2001:db8::1".into(), None));
        assert_eq!(ok("::1"), ("::1".into(), None));
    }

    #[test]
    fn entry_zone_is_dropped() {
        assert_eq!(ok("fe80::1%eth0"), ("fe80::1".into(), None));
        assert_eq!(ok("[fe80::1%25]:80"), ("fe80::1".into(), Some(80)));
        assert_eq!(parse_entry("fe80::1%"), Err(InvalidAddr::NotAnAddress));
        assert_eq!(parse_entry("10.0.0.1%eth0"), Err(InvalidAddr::NotAnAddress));
        assert_eq!(parse_entry("fe80::1%a b"), Err(InvalidAddr::NotAnAddress));
    }

    #[test]
    fn mapped_ipv4_is_the_ipv4_address() {
        assert_eq!(ok("::ffff:203.0.113.7"), ("203.0.113.7".into(), None));
        assert_eq!(ok("[::ffff:cb00:7107]:9"), ("203.0.113.7".into(), Some(9)));
        assert_eq!(
            parse_entry("::ffff:10.0.0.1").unwrap(),
            parse_entry("10.0.0.1").unwrap()
        );
    }

    #[test]
    fn ipv4_compatible_form_is_ipv6_not_ipv4() {
        let a = parse_entry("::10.0.0.1").unwrap();
        assert!(a.ip().is_ipv6());
        assert_eq!(a.to_string(), "::a00:1");
    }

    #[test]
    fn entry_invalid_forms() {
        for bad in [
            "unknown",
            "example.com",
            "_hidden",
            "010.0.0.1",
            "10.0.0.01",
            "1.2.3.4.5",
            "1.2.3.4.",
            "1.2.3",
            "256.0.0.1",
            "١.٢.٣.٤",
            "1.2.3.4:",
            "1.2.3.4:65536",
            "1.2.3.4:123456",
            "1.2.3.4:+80",
            "1.2.3.4: 80",
            "[2001:db8::1",
            "[2001:db8::1]80",
            "[2001:db8::1]:",
            "[203.0.113.7]",
            "\"203.0.113.7\"",
            "2001:db8::1::2",
            "2001:db8::g",
            "for=203.0.113.7",
        ] {
            assert!(parse_entry(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_entry("  "), Err(InvalidAddr::Empty));
        assert_eq!(parse_entry("1.2.3.4:99999"), Err(InvalidAddr::BadPort));
    }

    #[test]
    fn port_zero_is_no_port() {
        assert_eq!(ok("10.0.0.1:0"), ("10.0.0.1".into(), None));
        assert_eq!(parse_socket_addr("[::1]:0").unwrap().port(), None);
    }

    #[test]
    fn socket_addr_text_from_envoy() {
        assert_eq!(
            parse_socket_addr("[::ffff:198.51.100.4]:5000").unwrap(),
            ClientAddr::new("198.51.100.4".parse().unwrap(), Some(5000))
        );
        assert!(parse_socket_addr("/var/run/envoy.sock").is_err());
        assert!(parse_socket_addr("@abstract").is_err());
    }

    #[test]
    fn addr_text_is_formatted_on_the_stack() {
        let ip: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe".parse().unwrap();
        assert_eq!(
            AddrText::of(ip).as_str(),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
        );
        let mapped: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
        assert_eq!(AddrText::of(mapped).as_str(), "1.2.3.4");
        assert_eq!(AddrText::port(65535).as_str(), "65535");
    }
}
