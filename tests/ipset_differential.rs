//! Differential test of the compiled lookup structure: `IpSet::contains` against a plain linear
//! scan over `ipnet` networks, on random IPv4/IPv6 lists (overlaps, nested and touching prefixes,
//! /0, /32, /128, host bits set, IPv4-mapped networks) and random addresses (boundaries, mapped
//! and IPv4-compatible forms). They must agree on every address. The same for the two other ways
//! sources make a set: `IpSet::from_merged` (a published table's ranges, merged here by a plain
//! reference) and `IpSet::union` (a list's inline entries with its sources' lists).
//!
//! Deterministic: a fixed-seed splitmix64, so a failure reproduces and no new dependency is
//! needed. `IPSET_DIFF_CASES=N` runs N lists instead of the default (see RELIABILITY.md).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use client_ip_core::ipset::{parse_net, IpSet};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// splitmix64 (Steele, Lea, Flood 2014): small, fast, good enough for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The reference: the spec's words, one network at a time. An IPv4-mapped address is its IPv4
/// address; an IPv6 network inside `::ffff:0:0/96` (prefix ≥ 96) is the IPv4 network it maps;
/// any other IPv6 network, `::/0` included, holds no IPv4 address.
fn reference_contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    nets.iter().any(|net| match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => n.contains(&a),
        (IpNet::V6(n), IpAddr::V4(a)) => {
            let mapped_net = n.prefix_len() >= 96 && n.network().to_ipv4_mapped().is_some();
            mapped_net && n.contains(&a.to_ipv6_mapped())
        }
        (IpNet::V6(n), IpAddr::V6(a)) => {
            let mapped_net = n.prefix_len() >= 96 && n.network().to_ipv4_mapped().is_some();
            !mapped_net && n.contains(&a)
        }
        (IpNet::V4(_), IpAddr::V6(_)) => false,
    })
}

/// Prefix lengths with the edges over-represented.
fn v4_len(rng: &mut Rng) -> u8 {
    if rng.chance(30) {
        *rng.pick(&[0, 1, 8, 12, 16, 24, 31, 32, 32, 32, 32, 32])
    } else {
        12 + rng.below(21) as u8
    }
}

fn v6_len(rng: &mut Rng) -> u8 {
    if rng.chance(30) {
        *rng.pick(&[0, 1, 16, 32, 48, 64, 95, 96, 127, 128, 128, 128, 128, 128])
    } else {
        24 + rng.below(105) as u8
    }
}

/// Addresses from a few small neighbourhoods, so that random networks overlap and nest.
fn v4_addr(rng: &mut Rng) -> u32 {
    match rng.below(4) {
        0 => rng.next() as u32,
        1 => 0x0A00_0000 | (rng.next() as u32 & 0x0000_FFFF), // 10.0.x.x
        2 => 0xC0A8_0000 | (rng.next() as u32 & 0x0000_03FF), // 192.168.0-3.x
        _ => *rng.pick(&[0, 1, u32::MAX, u32::MAX - 1, 0x7FFF_FFFF, 0x8000_0000]),
    }
}

fn v6_addr(rng: &mut Rng) -> u128 {
    match rng.below(5) {
        0 => rng.u128(),
        1 => (0x2001_0db8u128 << 96) | (rng.u128() & 0xFFFF_FFFF), // 2001:db8::x:x
        2 => (0xFFFFu128 << 32) | u128::from(v4_addr(rng)),        // ::ffff:a.b.c.d
        3 => u128::from(v4_addr(rng)),                             // ::a.b.c.d (compatible)
        _ => *rng.pick(&[
            0,
            1,
            u128::MAX,
            u128::MAX - 1,
            0xFFFE_FFFF_FFFF,
            0x1_0000_0000_0000,
        ]),
    }
}

fn random_net(rng: &mut Rng, so_far: &[IpNet]) -> IpNet {
    // Half the time, derive from a network already in the list: nested, overlapping, touching.
    if !so_far.is_empty() && rng.chance(50) {
        let base = *rng.pick(so_far);
        return match base {
            IpNet::V4(n) => {
                let start = u32::from(n.network());
                let size = 1u64 << (32 - n.prefix_len());
                let addr = match rng.below(4) {
                    0 => start.wrapping_add((rng.next() % size) as u32), // inside
                    1 => (u64::from(start) + size) as u32,               // right after: touching
                    2 => start.wrapping_sub(1),                          // right before
                    _ => start,                                          // same start
                };
                let len = match rng.below(3) {
                    0 => (n.prefix_len() + rng.below(4) as u8).min(32), // nested
                    1 => n.prefix_len().saturating_sub(rng.below(3) as u8), // wider
                    _ => n.prefix_len(),
                };
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap())
            }
            IpNet::V6(n) => {
                let start = u128::from(n.network());
                let host_bits = 128 - u32::from(n.prefix_len());
                let size_minus_1 = if host_bits == 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                let addr = match rng.below(4) {
                    0 => start.wrapping_add(rng.u128() & size_minus_1),
                    1 => start.wrapping_add(size_minus_1).wrapping_add(1),
                    2 => start.wrapping_sub(1),
                    _ => start,
                };
                let len = match rng.below(3) {
                    0 => (n.prefix_len() + rng.below(9) as u8).min(128),
                    1 => n.prefix_len().saturating_sub(rng.below(9) as u8),
                    _ => n.prefix_len(),
                };
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap())
            }
        };
    }
    match rng.below(10) {
        0..=3 => IpNet::V4(Ipv4Net::new(Ipv4Addr::from(v4_addr(rng)), v4_len(rng)).unwrap()),
        4..=6 => IpNet::V6(Ipv6Net::new(Ipv6Addr::from(v6_addr(rng)), v6_len(rng)).unwrap()),
        7 | 8 => {
            // A mapped network: ::ffff:a.b.c.d/(96+k).
            let v4 = Ipv4Addr::from(v4_addr(rng));
            IpNet::V6(Ipv6Net::new(v4.to_ipv6_mapped(), 96 + v4_len(rng)).unwrap())
        }
        _ => {
            // Networks around the mapped range that are not mapped networks.
            let (addr, len) = *rng.pick(&[
                (0u128, 0u8),
                (0, 80),
                (0xFFFF_0000_0000, 95),
                (0xFFFE_0000_0000, 96),
                (0, 96),
                (0x1_0000_0000_0000, 96),
            ]);
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).unwrap())
        }
    }
}

/// Addresses to probe a list with: every network's edges and their neighbours, plus random ones.
fn probes(rng: &mut Rng, nets: &[IpNet], random: usize) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for net in nets {
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                for a in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    out.push(IpAddr::V4(Ipv4Addr::from(a)));
                    out.push(IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped()));
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                for a in [lo, hi, lo.wrapping_sub(1), hi.wrapping_add(1)] {
                    out.push(IpAddr::V6(Ipv6Addr::from(a)));
                    if let Some(v4) = Ipv6Addr::from(a).to_ipv4_mapped() {
                        out.push(IpAddr::V4(v4));
                    }
                }
            }
        }
    }
    for _ in 0..random {
        out.push(if rng.chance(45) {
            IpAddr::V4(Ipv4Addr::from(v4_addr(rng)))
        } else {
            IpAddr::V6(Ipv6Addr::from(v6_addr(rng)))
        });
    }
    out
}

/// A random list of networks as the main test makes them (nested, touching, host bits, mapped).
fn random_list(rng: &mut Rng) -> Vec<IpNet> {
    let len = match rng.below(10) {
        0 => 0,
        1..=6 => 1 + rng.below(12) as usize,
        7 | 8 => 1 + rng.below(100) as usize,
        _ => 1 + rng.below(1000) as usize,
    };
    let mut nets: Vec<IpNet> = Vec::with_capacity(len);
    for _ in 0..len {
        let net = random_net(rng, &nets);
        nets.push(net);
    }
    nets.into_iter()
        .map(|n| if rng.chance(80) { n.trunc() } else { n })
        .collect()
}

/// The reference's ranges of a list, inclusive: a mapped IPv6 network (inside `::ffff:0:0/96`,
/// prefix ≥ 96) as its IPv4 range, then sorted and merged when they overlap or touch, one pass.
/// Inclusive IPv4 and IPv6 ranges, as `IpSet::ranges_v4` and `IpSet::ranges_v6` give them.
type Ranges = (Vec<(u32, u32)>, Vec<(u128, u128)>);

fn reference_ranges(nets: &[IpNet]) -> Ranges {
    fn merge<T: Copy + Ord + From<u8> + std::ops::Add<Output = T>>(
        mut r: Vec<(T, T)>,
        max: T,
    ) -> Vec<(T, T)> {
        r.sort();
        let mut out: Vec<(T, T)> = Vec::new();
        for (lo, hi) in r {
            match out.last_mut() {
                Some(last) if last.1 == max || lo <= last.1 + T::from(1) => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        out
    }
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for net in nets {
        match net {
            IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => {
                let mapped = n.prefix_len() >= 96 && n.network().to_ipv4_mapped().is_some();
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                if mapped {
                    v4.push((lo as u32, hi as u32));
                } else {
                    v6.push((lo, hi));
                }
            }
        }
    }
    (merge(v4, u32::MAX), merge(v6, u128::MAX))
}

#[test]
fn from_merged_agrees_with_a_linear_scan_and_refuses_ranges_not_merged() {
    let mut rng = Rng(0xF00D_0000_4D45_5247);
    let (mut lists, mut lookups) = (0usize, 0usize);
    for case in 0..cases() / 8 {
        let nets = random_list(&mut rng);
        let (v4, v6) = reference_ranges(&nets);
        let set = IpSet::from_merged(v4.clone(), v6.clone())
            .unwrap_or_else(|| panic!("case {case}: merged ranges refused: {v4:?} {v6:?}"));
        assert_eq!(set.is_empty(), nets.is_empty(), "case {case}");
        for ip in probes(&mut rng, &nets, 32) {
            assert_eq!(
                set.contains(ip),
                reference_contains(&nets, ip),
                "case {case}: {ip} in {nets:?}"
            );
            lookups += 1;
        }
        // Ranges out of order, overlapping or touching are not a published table's: refused.
        if v4.len() >= 2 {
            let mut swapped = v4.clone();
            swapped.swap(0, 1);
            assert!(
                IpSet::from_merged(swapped, v6.clone()).is_none(),
                "case {case}"
            );
            let mut touching = v4.clone();
            touching[0].1 = touching[1].0 - 1;
            assert!(
                IpSet::from_merged(touching, v6.clone()).is_none(),
                "case {case}"
            );
        }
        if v6.len() >= 2 {
            let mut overlapping = v6.clone();
            overlapping[0].1 = overlapping[1].0;
            assert!(
                IpSet::from_merged(v4.clone(), overlapping).is_none(),
                "case {case}"
            );
        }
        lists += 1;
    }
    assert!(
        IpSet::from_merged(vec![(5, 4)], vec![]).is_none(),
        "a range ending before it starts"
    );
    eprintln!("from_merged differential: {lists} lists, {lookups} lookups");
}

#[test]
fn union_agrees_with_a_linear_scan_over_both_lists() {
    let mut rng = Rng(0x0417_0000_5E75_0001);
    let (mut pairs, mut lookups) = (0usize, 0usize);
    for case in 0..cases() / 8 {
        let a = random_list(&mut rng);
        // Half the time the second list grows from the first (overlapping, touching).
        let b = if rng.chance(50) {
            let mut b: Vec<IpNet> = Vec::new();
            for _ in 0..rng.below(20) {
                let net = random_net(&mut rng, if b.is_empty() { &a } else { &b });
                b.push(net);
            }
            b
        } else {
            random_list(&mut rng)
        };
        let union = IpSet::from_nets(a.iter().copied()).union(&IpSet::from_nets(b.iter().copied()));
        let both: Vec<IpNet> = a.iter().chain(&b).copied().collect();
        assert_eq!(union.is_empty(), both.is_empty(), "case {case}");
        let probe_nets: Vec<IpNet> = both.clone();
        for ip in probes(&mut rng, &probe_nets, 32) {
            assert_eq!(
                union.contains(ip),
                reference_contains(&both, ip),
                "case {case}: {ip} in {a:?} + {b:?}"
            );
            lookups += 1;
        }
        // The union's ranges are merged: the same as the reference's for both lists.
        let (v4, v6) = reference_ranges(&both);
        assert_eq!(union.ranges_v4(), &v4[..], "case {case}");
        assert_eq!(union.ranges_v6(), v6, "case {case}");
        pairs += 1;
    }
    eprintln!("union differential: {pairs} pairs, {lookups} lookups");
}

fn cases() -> usize {
    std::env::var("IPSET_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000)
}

#[test]
fn ipset_agrees_with_a_linear_scan_over_ipnet() {
    let mut rng = Rng(0x5EED_C11E_4710_F117);
    let (mut lists, mut lookups, mut hits) = (0usize, 0usize, 0usize);
    for case in 0..cases() {
        let len = match rng.below(10) {
            0 => 0,
            1..=6 => 1 + rng.below(12) as usize,
            7 | 8 => 1 + rng.below(100) as usize,
            _ => 1 + rng.below(1000) as usize,
        };
        let mut nets: Vec<IpNet> = Vec::with_capacity(len);
        for _ in 0..len {
            let net = random_net(&mut rng, &nets);
            nets.push(net);
        }
        // Host bits set in about one network out of five (the set ignores them, like ipnet).
        let nets: Vec<IpNet> = nets
            .into_iter()
            .map(|n| if rng.chance(80) { n.trunc() } else { n })
            .collect();
        let set = IpSet::from_nets(nets.iter().copied());
        assert_eq!(set.is_empty(), nets.is_empty(), "case {case}: {nets:?}");
        for ip in probes(&mut rng, &nets, 64) {
            let want = reference_contains(&nets, ip);
            let got = set.contains(ip);
            assert_eq!(got, want, "case {case}: {ip} in {nets:?}");
            lookups += 1;
            hits += usize::from(got);
        }
        lists += 1;
    }
    // Both answers must be exercised substantially, or the test proves little (edge probes sit
    // inside by construction, so most lookups hit).
    let misses = lookups - hits;
    assert!(
        hits > lookups / 20 && misses > lookups / 20,
        "{hits} hits of {lookups}"
    );
    eprintln!(
        "ipset differential: {lists} lists, {lookups} lookups, {hits} inside, {misses} outside"
    );
}

#[test]
fn parse_net_agrees_with_ipnet_on_canonical_text() {
    // Every network printed by ipnet (and every single address) parses back to the same network,
    // host bits cleared, with the host-bits flag telling whether any were set.
    let mut rng = Rng(0xC1D2_0000_0000_0001);
    let mut nets = Vec::new();
    for _ in 0..20_000 {
        let net = random_net(&mut rng, &nets);
        nets.push(net);
        if nets.len() > 64 {
            nets.remove(0);
        }
        let text = net.to_string();
        let (parsed, host_bits) = parse_net(&text).unwrap_or_else(|| panic!("{text} refused"));
        assert_eq!(parsed, net.trunc(), "{text}");
        assert_eq!(host_bits, net != net.trunc(), "{text}");
        let addr_text = net.addr().to_string();
        let (single, _) = parse_net(&addr_text).unwrap();
        assert_eq!(single, IpNet::from(net.addr()), "{addr_text}");
        // And the set built from the text holds what the network holds.
        let set = IpSet::from_nets([parsed]);
        let nets_one = [net];
        for ip in probes(&mut rng, &nets_one, 4) {
            assert_eq!(
                set.contains(ip),
                reference_contains(&nets_one, ip),
                "{ip} in {text}"
            );
        }
    }
}
