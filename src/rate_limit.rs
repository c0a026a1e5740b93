//! Per-client rate-limit keys (the `rate_limit` section, docs/rate-limits.md): the filter names
//! the bucket a request counts against; Envoy's own limiters (local or global) do the counting.
//!
//! The key is the resolved client masked to a prefix, as CIDR text (`203.0.113.7/32`,
//! `2001:db8:1:2::/64`); with `by_link`, a connection's private-link identity text instead; the
//! word `unknown` for an unknown client (all of them share one bucket); none for an exempt
//! client. The key is formatted on the stack: no allocation per request.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use crate::addr::{canonical, AddrText};
use crate::identity::{Identity, IdentitySet, Kinds};
use crate::ipset::IpSet;

/// The default prefix an IPv4 client is masked to: the address itself.
pub const DEFAULT_IPV4_PREFIX: u8 = 32;
/// The default prefix an IPv6 client is masked to: one host usually owns a whole /64.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// The accepted range of `ipv4_prefix`.
pub const IPV4_PREFIXES: std::ops::RangeInclusive<u8> = 8..=32;
/// The accepted range of `ipv6_prefix`.
pub const IPV6_PREFIXES: std::ops::RangeInclusive<u8> = 16..=128;
/// The key of every request whose client is unknown.
pub const UNKNOWN_KEY: &str = "unknown";

/// The compiled `rate_limit` section.
#[derive(Clone, Debug)]
pub struct RateLimit {
    /// IPv4 clients are keyed by their network of this length (8–32).
    pub ipv4_prefix: u8,
    /// IPv6 clients are keyed by their network of this length (16–128).
    pub ipv6_prefix: u8,
    /// A connection that carried a private-link identity is keyed by the identity's text.
    pub by_link: bool,
    /// Clients that get no key: addresses and CIDRs (with sources once bound).
    pub exempt: IpSet,
    /// Connections that get no key: identity entries of `exempt`.
    pub exempt_links: IdentitySet,
    /// The request header the key is also written to (lower case), when set.
    pub header: Option<String>,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            ipv4_prefix: DEFAULT_IPV4_PREFIX,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            by_link: false,
            exempt: IpSet::empty(),
            exempt_links: IdentitySet::default(),
            header: None,
        }
    }
}

/// What the section decides for an admitted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keying {
    /// The request counts against this key's bucket.
    Keyed(KeyText),
    /// The client is exempt: no key, so no per-client descriptor is generated.
    Exempt,
}

impl RateLimit {
    /// The key of a request from `client` (None: unknown) over a connection with identity `link`.
    #[inline]
    pub fn key(&self, client: Option<IpAddr>, link: Option<&Identity>) -> Keying {
        if client.is_some_and(|ip| self.exempt.contains(ip)) || self.exempt_links.contains(link) {
            return Keying::Exempt;
        }
        Keying::Keyed(match (link.filter(|_| self.by_link), client) {
            (Some(id), _) => KeyText::identity(id),
            (None, Some(ip)) => KeyText::network(ip, self.ipv4_prefix, self.ipv6_prefix),
            (None, None) => KeyText::unknown(),
        })
    }

    /// The identity kinds the section needs read per request: all with `by_link` (any identity
    /// keys), else those `exempt` holds.
    pub fn link_kinds(&self) -> Kinds {
        if self.by_link {
            Kinds::ALL
        } else {
            self.exempt_links.kinds()
        }
    }
}

/// A key's text on the stack. The longest is 43 bytes (an IPv6 network: 39 + `/128`); the
/// longest identity text is 46 (`aws-vpce:vpce-` and 32 hex digits).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyText {
    buf: [u8; 48],
    len: u8,
}

impl KeyText {
    fn empty() -> Self {
        KeyText {
            buf: [0; 48],
            len: 0,
        }
    }

    /// `ip` masked to its family's prefix, as CIDR text (`203.0.113.0/24`).
    pub fn network(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> Self {
        let (masked, prefix) = match canonical(ip) {
            IpAddr::V4(v4) => {
                let p = ipv4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(p)).unwrap_or(0);
                (IpAddr::from((u32::from(v4) & mask).to_be_bytes()), p)
            }
            IpAddr::V6(v6) => {
                let p = ipv6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(p)).unwrap_or(0);
                (IpAddr::from((u128::from(v6) & mask).to_be_bytes()), p)
            }
        };
        let mut text = KeyText::empty();
        // Cannot fail: at most 43 bytes.
        let _ = write!(text, "{}/{prefix}", AddrText::of(masked).as_str());
        text
    }

    /// A private-link identity's text (`aws-vpce:vpce-…`).
    pub fn identity(id: &Identity) -> Self {
        let mut text = KeyText::empty();
        let _ = write!(text, "{id}");
        text
    }

    /// The key of an unknown client.
    pub fn unknown() -> Self {
        let mut text = KeyText::empty();
        let _ = text.write_str(UNKNOWN_KEY);
        text
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        let bytes = self.buf.get(..usize::from(self.len)).unwrap_or(&[]);
        // Only whole `&str` pieces are ever written (`write_str`), so this never fails.
        std::str::from_utf8(bytes).unwrap_or_default()
    }
}

impl fmt::Write for KeyText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let start = usize::from(self.len);
        let end = start + s.len();
        let dest = self.buf.get_mut(start..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end as u8;
        Ok(())
    }
}

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyText({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    //! One test per rule of the key (docs/rate-limits.md), named after it.
    use super::*;
    use crate::ipset::parse_net;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn keyed(k: Keying) -> String {
        match k {
            Keying::Keyed(t) => t.as_str().to_string(),
            Keying::Exempt => panic!("exempt"),
        }
    }

    fn aws(id: &str) -> Identity {
        Identity::parse_entry(&format!("aws-vpce:{id}")).unwrap()
    }

    #[test]
    fn ipv4_client_is_keyed_by_its_address_as_a_slash_32_by_default() {
        let rl = RateLimit::default();
        assert_eq!(keyed(rl.key(ip("203.0.113.7"), None)), "203.0.113.7/32");
    }

    #[test]
    fn ipv6_client_is_keyed_by_its_slash_64_by_default() {
        let rl = RateLimit::default();
        assert_eq!(
            keyed(rl.key(ip("2001:db8:1:2:aaaa::7"), None)),
            "2001:db8:1:2::/64"
        );
        // Two addresses of one /64 share the key.
        assert_eq!(
            keyed(rl.key(ip("2001:db8:1:2::1"), None)),
            keyed(rl.key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), None))
        );
        assert_ne!(
            keyed(rl.key(ip("2001:db8:1:2::1"), None)),
            keyed(rl.key(ip("2001:db8:1:3::1"), None))
        );
    }

    #[test]
    fn clients_are_masked_to_the_configured_prefixes() {
        let rl = RateLimit {
            ipv4_prefix: 24,
            ipv6_prefix: 48,
            ..RateLimit::default()
        };
        assert_eq!(keyed(rl.key(ip("203.0.113.77"), None)), "203.0.113.0/24");
        assert_eq!(
            keyed(rl.key(ip("2001:db8:1:2::7"), None)),
            "2001:db8:1::/48"
        );
        let extremes = RateLimit {
            ipv4_prefix: 8,
            ipv6_prefix: 128,
            ..RateLimit::default()
        };
        assert_eq!(keyed(extremes.key(ip("10.9.8.7"), None)), "10.0.0.0/8");
        assert_eq!(
            keyed(extremes.key(ip("2001:db8::7"), None)),
            "2001:db8::7/128"
        );
        let wide = RateLimit {
            ipv6_prefix: 16,
            ..RateLimit::default()
        };
        assert_eq!(
            keyed(wide.key(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), None)),
            "ffff::/16"
        );
    }

    #[test]
    fn an_ipv4_mapped_client_is_keyed_as_ipv4() {
        let rl = RateLimit::default();
        assert_eq!(
            keyed(rl.key(ip("::ffff:203.0.113.7"), None)),
            "203.0.113.7/32"
        );
    }

    #[test]
    fn an_unknown_client_is_keyed_unknown() {
        let rl = RateLimit::default();
        assert_eq!(keyed(rl.key(None, None)), "unknown");
        // Also with an identity, when by_link is off.
        assert_eq!(keyed(rl.key(None, Some(&aws("vpce-0a1b2c3d")))), "unknown");
    }

    #[test]
    fn by_link_keys_a_connection_with_an_identity_by_the_identity() {
        let rl = RateLimit {
            by_link: true,
            ..RateLimit::default()
        };
        let id = aws("vpce-0a1b2c3d4e5f60718");
        assert_eq!(
            keyed(rl.key(ip("10.0.0.1"), Some(&id))),
            "aws-vpce:vpce-0a1b2c3d4e5f60718"
        );
        assert_eq!(
            keyed(rl.key(None, Some(&id))),
            "aws-vpce:vpce-0a1b2c3d4e5f60718"
        );
        // The longest identity text fits.
        let longest = aws(&format!("vpce-{}", "f".repeat(32)));
        assert_eq!(keyed(rl.key(None, Some(&longest))).len(), 46);
        let gcp = Identity::parse_entry("gcp-psc:18446744073709551615").unwrap();
        assert_eq!(
            keyed(rl.key(None, Some(&gcp))),
            "gcp-psc:18446744073709551615"
        );
        // A connection without one is keyed by its client.
        assert_eq!(keyed(rl.key(ip("10.0.0.1"), None)), "10.0.0.1/32");
    }

    #[test]
    fn without_by_link_an_identity_does_not_change_the_key() {
        let rl = RateLimit::default();
        assert_eq!(
            keyed(rl.key(ip("10.0.0.1"), Some(&aws("vpce-0a1b2c3d")))),
            "10.0.0.1/32"
        );
    }

    #[test]
    fn an_exempt_client_gets_no_key() {
        let rl = RateLimit {
            exempt: IpSet::from_nets([parse_net("198.51.100.0/24").unwrap().0]),
            exempt_links: IdentitySet::from_identities([aws("vpce-0a1b2c3d")]),
            by_link: true,
            ..RateLimit::default()
        };
        assert_eq!(rl.key(ip("198.51.100.9"), None), Keying::Exempt);
        assert_eq!(rl.key(ip("::ffff:198.51.100.9"), None), Keying::Exempt);
        assert_eq!(
            rl.key(ip("203.0.113.1"), Some(&aws("vpce-0a1b2c3d"))),
            Keying::Exempt
        );
        assert_eq!(rl.key(None, Some(&aws("vpce-0a1b2c3d"))), Keying::Exempt);
        // Outside the list: keyed.
        assert_eq!(keyed(rl.key(ip("198.51.101.9"), None)), "198.51.101.9/32");
        // An exempt address over a link that is not: exempt (the address is listed).
        assert_eq!(
            rl.key(ip("198.51.100.9"), Some(&aws("vpce-ffffffff"))),
            Keying::Exempt
        );
    }

    #[test]
    fn a_refused_request_gets_no_key_and_a_dry_run_refusal_is_keyed() {
        use crate::policy::{Downstream, Request};
        let (p, _) = crate::config::parse(
            br#"{"access": {"deny": ["192.0.2.0/24"],
                 "rules": [{"name": "dry", "path_prefixes": ["/dry"], "deny": ["192.0.2.0/24"],
                            "mode": "dry_run"}]},
                 "rate_limit": {}}"#,
        )
        .unwrap();
        let key = |path: &str| {
            let headers = crate::testutil::headers(&[(":path", path)]);
            let request = Request {
                downstream: Downstream::from_filter_state("192.0.2.9:1"),
                headers: &headers,
            };
            p.rate_limit_key(&p.decide(&request))
        };
        assert_eq!(key("/"), None);
        assert!(matches!(key("/dry"), Some(Keying::Keyed(t)) if t.as_str() == "192.0.2.9/32"));
        // Without the section, no request is keyed.
        let (none, _) = crate::config::parse(b"{}").unwrap();
        let headers = Vec::new();
        let request = Request {
            downstream: Downstream::from_filter_state("203.0.113.1:1"),
            headers: &headers,
        };
        assert_eq!(none.rate_limit_key(&none.decide(&request)), None);
    }

    #[test]
    fn by_link_reads_every_identity_kind_and_exempt_reads_its_own() {
        let rl = RateLimit::default();
        assert!(rl.link_kinds().is_empty());
        let rl = RateLimit {
            by_link: true,
            ..RateLimit::default()
        };
        assert_eq!(rl.link_kinds(), Kinds::ALL);
        let rl = RateLimit {
            exempt_links: IdentitySet::from_identities([aws("vpce-0a1b2c3d")]),
            ..RateLimit::default()
        };
        assert_eq!(
            rl.link_kinds(),
            Kinds::default().with(crate::identity::Kind::AwsVpce)
        );
    }
}
