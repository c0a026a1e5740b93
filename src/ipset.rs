//! `IpSet`: a compiled set of IP networks. Networks are turned into address ranges, sorted and
//! merged once at configuration time; a lookup is one binary search over a flat array of range
//! starts, so its cost grows with log2 of the list, not with its length.
//! IPv4 and IPv6 live in separate tables: `::/0` holds no IPv4 address. Mapped networks
//! (`::ffff:10.0.0.0/104`) are stored as the IPv4 networks they denote (`10.0.0.0/8`).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::addr::canonical;

/// Sorted, disjoint, non-adjacent inclusive ranges `[starts[i], ends[i]]`.
#[derive(Clone, Debug, Default)]
struct Ranges<T> {
    starts: Vec<T>,
    ends: Vec<T>,
}

impl<T: Copy + Ord + One> Ranges<T> {
    fn build(mut pairs: Vec<(T, T)>) -> Self {
        pairs.sort_unstable();
        let mut starts: Vec<T> = Vec::with_capacity(pairs.len());
        let mut ends: Vec<T> = Vec::with_capacity(pairs.len());
        for (start, end) in pairs {
            if let Some(last) = ends.last_mut() {
                // Overlapping or touching the previous range: extend it.
                if *last == T::MAX || start <= last.plus_one() {
                    if end > *last {
                        *last = end;
                    }
                    continue;
                }
            }
            starts.push(start);
            ends.push(end);
        }
        starts.shrink_to_fit();
        ends.shrink_to_fit();
        Ranges { starts, ends }
    }

    #[inline]
    fn contains(&self, x: T) -> bool {
        // Index of the first range starting after x; the range before it is the only candidate.
        let i = self.starts.partition_point(|&s| s <= x);
        i > 0 && self.ends[i - 1] >= x
    }
}

/// Saturating successor, for merging touching ranges.
trait One: Sized {
    const MAX: Self;
    fn plus_one(self) -> Self;
}
impl One for u32 {
    const MAX: u32 = u32::MAX;
    fn plus_one(self) -> u32 {
        self.saturating_add(1)
    }
}
impl One for u128 {
    const MAX: u128 = u128::MAX;
    fn plus_one(self) -> u128 {
        self.saturating_add(1)
    }
}

/// A compiled, immutable set of IPv4 and IPv6 networks.
#[derive(Clone, Debug, Default)]
pub struct IpSet {
    v4: Ranges<u32>,
    v6: Ranges<u128>,
}

impl IpSet {
    /// The empty set.
    pub fn empty() -> Self {
        IpSet::default()
    }

    /// Compiles networks into a set. Host bits are ignored (a network is its whole range);
    /// IPv4-mapped IPv6 networks become IPv4 networks.
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut v4: Vec<(u32, u32)> = Vec::new();
        let mut v6: Vec<(u128, u128)> = Vec::new();
        for net in nets {
            match canonical_net(net) {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: Ranges::build(v4),
            v6: Ranges::build(v6),
        }
    }

    /// Whether the address is inside one of the networks. Mapped IPv4 addresses are looked up
    /// as IPv4.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.contains(u128::from(v6)),
        }
    }

    /// True when the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.starts.is_empty() && self.v6.starts.is_empty()
    }

    /// Number of disjoint ranges after merging (IPv4, IPv6); for logs.
    pub fn range_counts(&self) -> (usize, usize) {
        (self.v4.starts.len(), self.v6.starts.len())
    }
}

/// Parses a configured network: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address
/// (`198.51.100.7` is `/32`, an IPv6 address `/128`). Returns the network with host bits cleared
/// and whether the text had any set (`10.1.2.3/8`), or None when the text is neither.
pub fn parse_net(text: &str) -> Option<(IpNet, bool)> {
    // The address goes through std's parser, which refuses IPv4 octets with leading zeros
    // (`010.0.0.0/8`); ipnet's own CIDR parser accepts them.
    let Some((addr, len)) = text.split_once('/') else {
        return text
            .parse::<IpAddr>()
            .ok()
            .map(|ip| (IpNet::from(ip), false));
    };
    let ip = addr.parse::<IpAddr>().ok()?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let net = IpNet::new(ip, len.parse().ok()?).ok()?;
    Some((net.trunc(), net.trunc() != net))
}

/// The IPv4 network a mapped IPv6 network (`::ffff:0:0/96` and longer) denotes; others unchanged.
pub fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if n.prefix_len() >= 96 {
            if let Some(v4) = n.network().to_ipv4_mapped() {
                if let Ok(v4net) = Ipv4Net::new(v4, n.prefix_len() - 96) {
                    return IpNet::V4(v4net.trunc());
                }
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(nets: &[&str]) -> IpSet {
        IpSet::from_nets(nets.iter().map(|s| parse_net(s).unwrap().0))
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn empty_set_holds_nothing() {
        let s = IpSet::empty();
        assert!(s.is_empty());
        assert!(!s.contains(ip("0.0.0.0")));
        assert!(!s.contains(ip("::")));
    }

    #[test]
    fn cidr_bounds_are_inclusive() {
        let s = set(&["10.0.0.0/8", "192.168.1.7/32"]);
        assert!(s.contains(ip("10.0.0.0")));
        assert!(s.contains(ip("10.255.255.255")));
        assert!(!s.contains(ip("11.0.0.0")));
        assert!(!s.contains(ip("9.255.255.255")));
        assert!(s.contains(ip("192.168.1.7")));
        assert!(!s.contains(ip("192.168.1.8")));
        assert!(!s.contains(ip("192.168.1.6")));
    }

    #[test]
    fn ipv4_and_ipv6_are_separate() {
        let s = set(&["::/0"]);
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("10.0.0.1")));
        assert!(!s.contains(ip("::ffff:10.0.0.1")));
        let s = set(&["0.0.0.0/0"]);
        assert!(s.contains(ip("::ffff:10.0.0.1")));
        assert!(!s.contains(ip("::1")));
    }

    #[test]
    fn mapped_cidr_is_the_ipv4_cidr() {
        let s = set(&["::ffff:10.0.0.0/104"]);
        assert!(s.contains(ip("10.1.2.3")));
        assert!(s.contains(ip("::ffff:10.1.2.3")));
        assert!(!s.contains(ip("11.0.0.0")));
        let (v4, v6) = s.range_counts();
        assert_eq!((v4, v6), (1, 0));
    }

    #[test]
    fn overlapping_nested_and_touching_ranges_merge() {
        let s = set(&[
            "10.0.0.0/9",
            "10.128.0.0/9",
            "10.1.0.0/16",
            "0.0.0.0/32",
            "255.255.255.255/32",
            "2001:db8::/32",
            "2001:db8:1::/48",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
        ]);
        assert_eq!(s.range_counts(), (3, 2));
        assert!(s.contains(ip("10.200.0.1")));
        assert!(s.contains(ip("255.255.255.255")));
        assert!(s.contains(ip("0.0.0.0")));
        assert!(!s.contains(ip("0.0.0.1")));
        assert!(s.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!s.contains(ip("2001:db9::")));
    }

    #[test]
    fn single_addresses_are_host_networks() {
        assert_eq!(
            parse_net("198.51.100.7").unwrap().0.to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            parse_net("2001:db8::1").unwrap().0.to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_net("10.1.2.3/8").unwrap(),
            ("10.0.0.0/8".parse().unwrap(), true)
        );
        assert!(!parse_net("10.0.0.0/8").unwrap().1);
        for bad in [
            "10.0.0.0/33",
            "x",
            "10.0.0.0/",
            "/8",
            "010.0.0.0/8",
            "fe80::1%eth0",
        ] {
            assert!(parse_net(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn host_bits_are_ignored() {
        let s = IpSet::from_nets(["10.1.2.3/8".parse::<IpNet>().unwrap()]);
        assert!(s.contains(ip("10.0.0.0")));
        assert!(s.contains(ip("10.255.0.1")));
    }
}
