//! Addresses as the filter sees them: one canonical form for every IP (an IPv4-mapped IPv6
//! address *is* its IPv4 address), parsing of forwarding-header entries and of Envoy's socket
//! address text, and allocation-free address text for headers and logs.

use std::fmt;
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
    let (start, end) = ows_bounds(s.as_bytes());
    // Both ends sit next to ASCII bytes (or at the ends): char boundaries.
    s.get(start..end).unwrap_or("")
}

/// [`trim_ows`] on bytes.
#[inline]
fn trim_ows_bytes(b: &[u8]) -> &[u8] {
    let (start, end) = ows_bounds(b);
    &b[start..end]
}

/// The range of `b` without its leading and trailing spaces and tabs.
#[inline]
fn ows_bounds(b: &[u8]) -> (usize, usize) {
    let (mut start, mut end) = (0, b.len());
    while start < end && matches!(b[start], b' ' | b'\t') {
        start += 1;
    }
    while end > start && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    (start, end)
}

/// Parses one forwarding-header entry (already split at commas; surrounding spaces and tabs
/// are trimmed here). Accepted forms: `a.b.c.d`, `a.b.c.d:port`, a bare IPv6 address,
/// `[ipv6]`, `[ipv6]:port`; an IPv6 address may carry a `%zone`, which is dropped.
/// A bare IPv6 address is never split at a colon. IPv4 octets with leading zeros
/// (`010.0.0.1`) are rejected: they are ambiguous (octal to some parsers, decimal to others).
///
/// The addresses are read by hand, byte by byte, accepting exactly what std's `Ipv4Addr` and
/// `Ipv6Addr` parsers accept (the `entry` fuzz target compares the two): this runs on every
/// request, and std's parser and `core::fmt` were most of a decision's time.
pub fn parse_entry(entry: &str) -> Result<ClientAddr, InvalidAddr> {
    parse_entry_bytes(entry.as_bytes())
}

/// [`parse_entry`] on bytes: only ASCII text can be an address, so no UTF-8 check is needed first.
pub fn parse_entry_bytes(entry: &[u8]) -> Result<ClientAddr, InvalidAddr> {
    let s = trim_ows_bytes(entry);
    let Some(&first) = s.first() else {
        return Err(InvalidAddr::Empty);
    };
    if first == b'[' {
        let rest = &s[1..];
        let close = rest
            .iter()
            .position(|&b| b == b']')
            .ok_or(InvalidAddr::NotAnAddress)?;
        let ip = parse_ipv6_with_zone(&rest[..close])?;
        let port = match &rest[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(parse_port(port)?),
            _ => return Err(InvalidAddr::NotAnAddress),
        };
        return Ok(ClientAddr::new(IpAddr::V6(ip), port));
    }
    let mut colons = s.iter().enumerate().filter(|&(_, &b)| b == b':');
    match (colons.next(), colons.next()) {
        (None, _) => parse_ipv4(s).map(|ip| ClientAddr::new(IpAddr::V4(ip), None)),
        // Exactly one colon: only `a.b.c.d:port` has that shape (an IPv6 address has two or more).
        (Some((i, _)), None) => {
            let ip = parse_ipv4(&s[..i])?;
            let port = parse_port(&s[i + 1..])?;
            Ok(ClientAddr::new(IpAddr::V4(ip), Some(port)))
        }
        (Some(_), Some(_)) => {
            parse_ipv6_with_zone(s).map(|ip| ClientAddr::new(IpAddr::V6(ip), None))
        }
    }
}

/// Parses Envoy's text for a socket address, as in the `source.address` property and the
/// `%DOWNSTREAM_REMOTE_ADDRESS%` filter state: `1.2.3.4:5`, `[2001:db8::1]:5`, or an address
/// without a port. A pipe path or anything else is not an address.
pub fn parse_socket_addr(text: &str) -> Result<ClientAddr, InvalidAddr> {
    parse_entry(text)
}

/// [`parse_socket_addr`] on the bytes of a property value.
pub fn parse_socket_addr_bytes(bytes: &[u8]) -> Result<ClientAddr, InvalidAddr> {
    parse_entry_bytes(bytes)
}

/// An IP address alone (no port, brackets or zone), accepting exactly what std's `IpAddr` parser
/// accepts; not folded to canonical form. Configuration lists use it too, so the `.wasm` carries
/// one address parser, not two.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let s = text.as_bytes();
    match parse_ipv4(s) {
        Ok(v4) => Some(IpAddr::V4(v4)),
        Err(_) => parse_ipv6(s).map(IpAddr::V6),
    }
}

/// A whole IPv4 address, as std reads it: four decimal octets of 1 to 3 ASCII digits up to 255,
/// no leading zeros, separated by dots, nothing else.
fn parse_ipv4(s: &[u8]) -> Result<Ipv4Addr, InvalidAddr> {
    match read_ipv4(s) {
        Some((ip, read)) if read == s.len() => Ok(Ipv4Addr::from(ip)),
        _ => Err(InvalidAddr::NotAnAddress),
    }
}

/// std's IPv4 reader at the start of `s` (it need not reach the end): the address and the
/// number of bytes it took.
#[inline]
fn read_ipv4(s: &[u8]) -> Option<(u32, usize)> {
    let mut pos = 0;
    let mut ip = 0u32;
    for octet in 0..4 {
        if octet > 0 {
            if s.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let start = pos;
        let mut value = 0u32;
        while let Some(&b) = s.get(pos) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value * 10 + u32::from(b - b'0');
            pos += 1;
            if pos - start > 3 {
                return None;
            }
        }
        let digits = pos - start;
        if digits == 0 || (digits > 1 && s[start] == b'0') || value > 255 {
            return None;
        }
        ip = ip << 8 | value;
    }
    Some((ip, pos))
}

fn parse_ipv6_with_zone(s: &[u8]) -> Result<Ipv6Addr, InvalidAddr> {
    let addr = match s.iter().position(|&b| b == b'%') {
        Some(i) if is_zone(&s[i + 1..]) => &s[..i],
        Some(_) => return Err(InvalidAddr::NotAnAddress),
        None => s,
    };
    parse_ipv6(addr).ok_or(InvalidAddr::NotAnAddress)
}

/// A whole IPv6 address, exactly as std reads it (the same steps as core::net's parser): groups
/// of 1 to 4 hex digits separated by colons, at most one `::` standing for one or more zero
/// groups, and an embedded IPv4 address in place of the last two groups.
fn parse_ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    let mut head = [0u16; 8];
    let mut pos = 0;
    // Without a dot there is no embedded IPv4 address to try at each group.
    let dotted = s.contains(&b'.');
    let (head_size, head_ipv4) = read_groups(s, &mut pos, &mut head, dotted);
    if head_size == 8 {
        return (pos == s.len()).then(|| Ipv6Addr::from(head));
    }
    // An IPv4 part is not allowed before `::`.
    if head_ipv4 || s.get(pos..pos + 2) != Some(b"::") {
        return None;
    }
    pos += 2;
    // `::` stands for at least one zero group.
    let mut tail = [0u16; 7];
    let limit = 7 - head_size;
    let (tail_size, _) = read_groups(s, &mut pos, &mut tail[..limit], dotted);
    if pos != s.len() {
        return None;
    }
    head[8 - tail_size..].copy_from_slice(&tail[..tail_size]);
    Some(Ipv6Addr::from(head))
}

/// Reads colon-separated groups into `groups` from `pos` on, with an embedded IPv4 address as
/// the last two groups when at least two are left. Returns the number of groups read and whether
/// an IPv4 address ended them; `pos` is left after the last group read. `dotted`: whether `s`
/// holds a dot at all (else no IPv4 address is tried).
#[inline]
fn read_groups(s: &[u8], pos: &mut usize, groups: &mut [u16], dotted: bool) -> (usize, bool) {
    let limit = groups.len();
    for i in 0..limit {
        let mut p = *pos;
        if i > 0 {
            if s.get(p) != Some(&b':') {
                return (i, false);
            }
            p += 1;
        }
        if dotted && i + 1 < limit {
            if let Some((v4, read)) = read_ipv4(s.get(p..).unwrap_or(&[])) {
                groups[i] = (v4 >> 16) as u16;
                groups[i + 1] = v4 as u16;
                *pos = p + read;
                return (i + 2, true);
            }
        }
        let start = p;
        let mut value = 0u32;
        while let Some(digit) = s.get(p).and_then(|&b| hex_digit(b)) {
            value = value << 4 | digit;
            p += 1;
            if p - start > 4 {
                return (i, false);
            }
        }
        if p == start {
            return (i, false);
        }
        groups[i] = value as u16;
        *pos = p;
    }
    (limit, false)
}

#[inline]
fn hex_digit(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u32::from(b - b'A' + 10)),
        _ => None,
    }
}

/// A zone id (RFC 6874 / RFC 4007): a non-empty run of unreserved characters.
fn is_zone(zone: &[u8]) -> bool {
    !zone.is_empty()
        && zone
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// 1 to 5 ASCII digits, at most 65535.
fn parse_port(s: &[u8]) -> Result<u16, InvalidAddr> {
    if s.is_empty() || s.len() > 5 {
        return Err(InvalidAddr::BadPort);
    }
    let mut port = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(InvalidAddr::BadPort);
        }
        port = port * 10 + u32::from(b - b'0');
    }
    u16::try_from(port).map_err(|_| InvalidAddr::BadPort)
}

/// Address text on the stack: the longest IPv6 text is 39 bytes (45 with a dotted tail, which the
/// canonical form never has beyond `::ffff:` addresses, themselves folded to IPv4).
#[derive(Clone, Copy)]
pub struct AddrText {
    buf: [u8; 48],
    len: u8,
}

impl AddrText {
    fn new() -> Self {
        AddrText {
            buf: [0; 48],
            len: 0,
        }
    }

    /// Formats an address (canonical form first) without allocating: the text std prints (RFC
    /// 5952 for IPv6: lower case, no leading zeros, the first longest run of two or more zero
    /// groups as `::`), written by hand rather than through `core::fmt`.
    pub fn of(ip: IpAddr) -> Self {
        let mut text = AddrText::new();
        match canonical(ip) {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text.push(b'.');
                    }
                    text.push_decimal(u32::from(octet));
                }
            }
            IpAddr::V6(v6) => {
                let groups = v6.segments();
                // The first longest run of zero groups.
                let (mut best_start, mut best_len) = (0, 0);
                let (mut start, mut len) = (0, 0);
                for (i, &g) in groups.iter().enumerate() {
                    if g == 0 {
                        if len == 0 {
                            start = i;
                        }
                        len += 1;
                        if len > best_len {
                            (best_start, best_len) = (start, len);
                        }
                    } else {
                        len = 0;
                    }
                }
                if best_len > 1 {
                    text.push_groups(&groups[..best_start]);
                    text.push(b':');
                    text.push(b':');
                    text.push_groups(&groups[best_start + best_len..]);
                } else {
                    text.push_groups(&groups);
                }
            }
        }
        text
    }

    /// Formats a port without allocating.
    pub fn port(port: u16) -> Self {
        let mut text = AddrText::new();
        text.push_decimal(u32::from(port));
        text
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or(&[]);
        // `buf[..len]` is only ever written with ASCII bytes (`push`) or with whole `&str` pieces
        // (`fmt::Write::write_str`, which refuses a piece that does not fit), so the check always
        // passes. It costs about as much as formatting an IPv4 address; the core keeps no
        // `unsafe` for that (the only `unsafe` of the crate is the ABI layer, `host`).
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// Appends one ASCII byte; a full buffer (never reached by address text) drops it.
    #[inline(always)]
    fn push(&mut self, b: u8) {
        let len = usize::from(self.len);
        if len < self.buf.len() {
            self.buf[len] = b;
            self.len += 1;
        }
    }

    #[inline]
    fn push_decimal(&mut self, n: u32) {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.push(d);
        }
    }

    /// Colon-separated lower-case hex groups without leading zeros.
    #[inline]
    fn push_groups(&mut self, groups: &[u16]) {
        for (i, &g) in groups.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            let mut shift = (16 - (g | 1).leading_zeros() as i32 + 3) / 4 * 4 - 4;
            while shift >= 0 {
                self.push(b"0123456789abcdef"[usize::from((g >> shift) & 0xf)]);
                shift -= 4;
            }
        }
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
    use crate::testutil::Rng;

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
    fn hand_written_parsers_accept_exactly_what_std_accepts() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        let pieces: &[&str] = &[
            "0",
            "1",
            "00",
            "01",
            "9",
            "10",
            "99",
            "100",
            "255",
            "256",
            "999",
            "0000",
            "ffff",
            "FFFF",
            "fFf0",
            "12345",
            "abc",
            "g",
            ":",
            "::",
            ".",
            "1.2.3.4",
            "::ffff:",
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3",
            "%",
            "%eth0",
            "]",
            "[",
            " ",
            "ff",
            "db8",
            "2001",
        ];
        for _ in 0..200_000 {
            let mut text = String::new();
            for _ in 0..rng.below(12) {
                text.push_str(pieces[rng.below(pieces.len() as u64) as usize]);
            }
            let b = text.as_bytes();
            assert_eq!(
                parse_ipv4(b).ok(),
                text.parse::<Ipv4Addr>().ok(),
                "{text:?}"
            );
            assert_eq!(parse_ipv6(b), text.parse::<Ipv6Addr>().ok(), "{text:?}");
            assert_eq!(parse_ip(&text), text.parse::<IpAddr>().ok(), "{text:?}");
            let port = (!b.is_empty() && b.len() <= 5 && b.iter().all(u8::is_ascii_digit))
                .then(|| text.parse::<u16>().ok())
                .flatten();
            assert_eq!(parse_port(b).ok(), port, "{text:?}");
        }
    }

    #[test]
    fn hand_written_text_is_what_std_prints() {
        let mut rng = Rng(0x0fed_cba9_8765_4321);
        for _ in 0..100_000 {
            // Groups that are often zero, so that runs of every length and position occur.
            let mut groups = [0u16; 8];
            for g in &mut groups {
                *g = match rng.below(4) {
                    0 | 1 => 0,
                    2 => rng.next() as u16,
                    _ => (rng.next() as u16) >> rng.below(16),
                };
            }
            let v6 = Ipv6Addr::from(groups);
            let ip = canonical(IpAddr::V6(v6));
            assert_eq!(AddrText::of(ip).as_str(), ip.to_string());
            let v4 = IpAddr::V4(Ipv4Addr::from(rng.next() as u32 >> rng.below(32)));
            assert_eq!(AddrText::of(v4).as_str(), v4.to_string());
            let port = rng.next() as u16 >> rng.below(16);
            assert_eq!(AddrText::port(port).as_str(), port.to_string());
        }
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
