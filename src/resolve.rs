//! Resolving the client address (docs/resolution.md): who is the client, given the downstream address and
//! the chain, and whom the operator trusts to have written the chain.

use crate::addr::ClientAddr;
use crate::chain::{Chain, HeaderKind, HeaderLines};
use crate::ipset::IpSet;

/// Whose forwarding headers are believed.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Nobody's: the client is the downstream address (the default).
    Nobody,
    /// Proxies inside these networks: walk left from the downstream address while trusted.
    Proxies(IpSet),
    /// A fixed number of proxies: the client is this many places left of the downstream address.
    Hops(u32),
}

/// What an invalid entry, where the walk has to read one, makes of the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnInvalid {
    /// The client is unknown (the default).
    Unknown,
    /// The client is the downstream address.
    Downstream,
}

/// The compiled `client_ip` section.
#[derive(Clone, Debug)]
pub struct Resolver {
    trust: Trust,
    header: String,
    kind: HeaderKind,
    on_invalid: OnInvalid,
}

/// The outcome of resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The client, when known.
    pub client: Option<ClientAddr>,
    /// The walk read an invalid entry (counted in `client_ip.invalid`).
    pub invalid: bool,
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::new(Trust::Nobody, "x-forwarded-for", OnInvalid::Unknown)
    }
}

impl Resolver {
    /// A resolver reading `header` (stored lower case).
    pub fn new(trust: Trust, header: &str, on_invalid: OnInvalid) -> Self {
        let header = header.to_ascii_lowercase();
        Resolver {
            kind: HeaderKind::of(&header),
            trust,
            header,
            on_invalid,
        }
    }

    /// The trusted proxies, with `trusted_proxies`.
    pub fn trusted_proxies(&self) -> Option<&IpSet> {
        match &self.trust {
            Trust::Proxies(set) => Some(set),
            _ => None,
        }
    }

    /// Replaces the trusted proxies (a list bound to its sources); nothing without them.
    pub fn set_trusted_proxies(&mut self, set: IpSet) {
        if let Trust::Proxies(trusted) = &mut self.trust {
            *trusted = set;
        }
    }

    /// The forwarding header this resolver reads (lower case).
    pub fn header(&self) -> &str {
        &self.header
    }

    /// The forwarding header this resolver reads and how it lists addresses; None when no
    /// header is believed (no `trusted_proxies`, no `trusted_hops`), so none is read.
    pub fn reads(&self) -> Option<(&str, HeaderKind)> {
        match self.trust {
            Trust::Nobody => None,
            Trust::Proxies(_) | Trust::Hops(_) => Some((&self.header, self.kind)),
        }
    }

    /// Whether resolution reads the forwarding header for a request from `downstream`: with
    /// `trusted_hops` always, with `trusted_proxies` only when the downstream address is trusted
    /// (otherwise it is the client, whatever the header says), never without either.
    pub fn reads_header_from(&self, downstream: Option<ClientAddr>) -> bool {
        match (&self.trust, downstream) {
            (_, None) | (Trust::Nobody, _) => false,
            (Trust::Hops(_), Some(_)) => true,
            (Trust::Proxies(trusted), Some(d)) => trusted.contains(d.ip()),
        }
    }

    /// Resolves the client of a request. An unknown downstream address makes an unknown client.
    pub fn resolve(&self, downstream: Option<ClientAddr>, headers: &HeaderLines) -> Resolution {
        let Some(downstream) = downstream else {
            return Resolution {
                client: None,
                invalid: false,
            };
        };
        let found = match &self.trust {
            Trust::Nobody => Ok(downstream),
            Trust::Proxies(trusted) => self.walk_trusted(trusted, downstream, headers),
            Trust::Hops(hops) => self.walk_hops(*hops, downstream, headers),
        };
        match found {
            Ok(client) => Resolution {
                client: Some(client),
                invalid: false,
            },
            Err(Invalid) => Resolution {
                client: match self.on_invalid {
                    OnInvalid::Unknown => None,
                    OnInvalid::Downstream => Some(downstream),
                },
                invalid: true,
            },
        }
    }

    /// Starts at the downstream address; while the current address is trusted and has a left
    /// neighbour, steps left. The first untrusted address, or the leftmost, is the client.
    fn walk_trusted(
        &self,
        trusted: &IpSet,
        downstream: ClientAddr,
        headers: &HeaderLines,
    ) -> Result<ClientAddr, Invalid> {
        let mut chain = Chain::new(headers, &self.header, self.kind, downstream);
        let mut current = downstream;
        while trusted.contains(current.ip()) {
            match chain.next_addr() {
                None => break,
                Some(parsed) => current = parsed.map_err(|_| Invalid)?,
            }
        }
        Ok(current)
    }

    /// The entry `hops` places left of the downstream address; the downstream address itself when
    /// the chain is shorter than that. Entries passed over are counted, not read.
    fn walk_hops(
        &self,
        hops: u32,
        downstream: ClientAddr,
        headers: &HeaderLines,
    ) -> Result<ClientAddr, Invalid> {
        let mut chain = Chain::new(headers, &self.header, self.kind, downstream);
        let skip = hops.saturating_sub(1) as usize;
        if skip > 0 && chain.nth(skip - 1).is_none() {
            return Ok(downstream);
        }
        match chain.next_addr() {
            Some(parsed) => parsed.map_err(|_| Invalid),
            None => Ok(downstream),
        }
    }
}

/// The walk read an invalid entry.
#[derive(Debug)]
struct Invalid;

#[cfg(test)]
mod tests {
    //! One test per rule of docs/resolution.md, named after it.
    use super::*;
    use crate::addr::parse_socket_addr;
    use crate::testutil::headers as h;

    fn ds(s: &str) -> Option<ClientAddr> {
        Some(parse_socket_addr(s).unwrap())
    }
    fn proxies(nets: &[&str]) -> Trust {
        Trust::Proxies(IpSet::from_nets(
            nets.iter().map(|n| crate::ipset::parse_net(n).unwrap().0),
        ))
    }
    fn client(r: Resolution) -> Option<String> {
        r.client.map(|c| match c.port() {
            Some(p) => format!("{c}:{p}"),
            None => c.to_string(),
        })
    }
    fn xff(v: &str) -> Vec<(String, String)> {
        h(&[("x-forwarded-for", v)])
    }

    #[test]
    fn default_client_is_the_downstream_address_and_no_header_is_believed() {
        let r = Resolver::default();
        let got = r.resolve(ds("203.0.113.7:4000"), &xff("1.1.1.1"));
        assert_eq!(client(got).as_deref(), Some("203.0.113.7:4000"));
        assert!(!got.invalid);
        // Even garbage is never read.
        assert!(!r.resolve(ds("203.0.113.7:4000"), &xff("garbage")).invalid);
    }

    #[test]
    fn unknown_downstream_makes_an_unknown_client() {
        let r = Resolver::new(
            proxies(&["0.0.0.0/0"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        assert_eq!(r.resolve(None, &xff("1.1.1.1")).client, None);
    }

    #[test]
    fn trusted_proxies_untrusted_downstream_means_the_header_is_ignored() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("198.51.100.1:9"), &xff("1.1.1.1, 10.0.0.2"));
        assert_eq!(client(got).as_deref(), Some("198.51.100.1:9"));
    }

    #[test]
    fn trusted_proxies_walk_stops_at_first_untrusted() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        // chain: 6.6.6.6 (forged), 1.1.1.1 (client), 10.0.0.3, 10.0.0.2 (downstream)
        let got = r.resolve(ds("10.0.0.2:1"), &xff("6.6.6.6, 1.1.1.1:5555, 10.0.0.3"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1:5555"));
    }

    #[test]
    fn trusted_proxies_all_trusted_gives_the_leftmost() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff("10.9.9.9, 10.0.0.3"));
        assert_eq!(client(got).as_deref(), Some("10.9.9.9"));
        // No header at all: the trusted downstream is the client.
        let got = r.resolve(ds("10.0.0.2:1"), &[]);
        assert_eq!(client(got).as_deref(), Some("10.0.0.2:1"));
    }

    #[test]
    fn trusted_proxies_does_not_double_count_an_appended_downstream() {
        // use_remote_address: true: Envoy appended 10.0.0.2 itself.
        let r = Resolver::new(
            proxies(&["10.0.0.2/32"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, 10.0.0.2"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn trusted_proxies_with_a_single_address_header() {
        let r = Resolver::new(proxies(&["10.0.0.0/8"]), "X-Real-IP", OnInvalid::Unknown);
        assert_eq!(r.header(), "x-real-ip");
        let hs = h(&[("x-real-ip", "1.1.1.1")]);
        assert_eq!(
            client(r.resolve(ds("10.0.0.2:1"), &hs)).as_deref(),
            Some("1.1.1.1")
        );
        // From an untrusted peer the header is ignored.
        assert_eq!(
            client(r.resolve(ds("8.8.8.8:1"), &hs)).as_deref(),
            Some("8.8.8.8:1")
        );
        // Several values: invalid.
        let hs = h(&[("x-real-ip", "1.1.1.1, 2.2.2.2")]);
        let got = r.resolve(ds("10.0.0.2:1"), &hs);
        assert_eq!((got.client, got.invalid), (None, true));
    }

    #[test]
    fn trusted_hops_picks_the_entry_n_places_left_of_the_downstream() {
        let r = Resolver::new(Trust::Hops(2), "x-forwarded-for", OnInvalid::Unknown);
        let got = r.resolve(ds("10.0.0.2:1"), &xff("6.6.6.6, 1.1.1.1, 10.0.0.3"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
        let r1 = Resolver::new(Trust::Hops(1), "x-forwarded-for", OnInvalid::Unknown);
        let got = r1.resolve(ds("10.0.0.2:1"), &xff("6.6.6.6, 1.1.1.1, 10.0.0.3"));
        assert_eq!(client(got).as_deref(), Some("10.0.0.3"));
    }

    #[test]
    fn trusted_hops_counts_like_envoy_when_envoy_appended_the_downstream() {
        let r = Resolver::new(Trust::Hops(1), "x-forwarded-for", OnInvalid::Unknown);
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, 10.0.0.2"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn trusted_hops_chain_too_short_gives_the_downstream() {
        let r = Resolver::new(Trust::Hops(3), "x-forwarded-for", OnInvalid::Unknown);
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, 10.0.0.3"));
        assert_eq!(client(got).as_deref(), Some("10.0.0.2:1"));
        assert!(!got.invalid);
    }

    #[test]
    fn trusted_hops_passes_over_entries_without_reading_them() {
        let r = Resolver::new(Trust::Hops(2), "x-forwarded-for", OnInvalid::Unknown);
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, unknown"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
        assert!(!got.invalid);
    }

    #[test]
    fn on_invalid_unknown_makes_the_client_unknown_and_counts() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, unknown"));
        assert_eq!((got.client, got.invalid), (None, true));
        let r = Resolver::new(Trust::Hops(1), "x-forwarded-for", OnInvalid::Unknown);
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, bad-host"));
        assert_eq!((got.client, got.invalid), (None, true));
    }

    #[test]
    fn on_invalid_downstream_falls_back_to_the_downstream_and_counts() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Downstream,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff("1.1.1.1, 010.0.0.1"));
        assert_eq!(client(got).as_deref(), Some("10.0.0.2:1"));
        assert!(got.invalid);
    }

    #[test]
    fn invalid_entries_the_walk_does_not_reach_are_not_counted() {
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff("garbage, 1.1.1.1"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
        assert!(!got.invalid);
    }

    #[test]
    fn mapped_addresses_are_ipv4_for_trust_and_result() {
        let r = Resolver::new(
            proxies(&["::ffff:10.0.0.0/104"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("[::ffff:10.0.0.2]:1"), &xff("::ffff:1.1.1.1"));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
    }

    #[test]
    fn walk_cost_grows_with_entries_examined_not_header_length() {
        // 10,000 junk entries left of the client are never parsed: the walk stops at 1.1.1.1.
        let mut v = "junk, ".repeat(10_000);
        v.push_str("1.1.1.1, 10.0.0.3");
        let r = Resolver::new(
            proxies(&["10.0.0.0/8"]),
            "x-forwarded-for",
            OnInvalid::Unknown,
        );
        let got = r.resolve(ds("10.0.0.2:1"), &xff(&v));
        assert_eq!(client(got).as_deref(), Some("1.1.1.1"));
        assert!(!got.invalid);
    }
}
