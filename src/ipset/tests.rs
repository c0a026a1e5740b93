use super::*;
use crate::testutil::{ip_set as set, Rng};

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

/// A network drawn near a few anchors (the ends of each space, a common prefix, mapped
/// IPv4), so that lists overlap, nest, touch and hit the edges; sometimes anywhere.
fn random_net(rng: &mut Rng) -> IpNet {
    match rng.below(5) {
        0 | 1 => {
            let anchor = [0u32, 0x0a00_0000, 0xffff_ff00, rng.next() as u32][rng.below(4) as usize];
            let addr = anchor
                ^ (rng.next() as u32 & [0xff, 0xffff, 0xff_ffff, u32::MAX][rng.below(4) as usize]);
            let len = if rng.below(4) == 0 {
                rng.below(33)
            } else {
                20 + rng.below(13)
            } as u8;
            IpNet::V4(Ipv4Net::new(addr.into(), len).unwrap())
        }
        2 | 3 => {
            let anchor =
                [0u128, 0x2001_0db8 << 96, u128::MAX << 16, rng.u128()][rng.below(4) as usize];
            let addr = anchor
                ^ (rng.u128() & [0xffff, u128::from(u64::MAX), u128::MAX][rng.below(3) as usize]);
            let len = if rng.below(4) == 0 {
                rng.below(129)
            } else {
                100 + rng.below(29)
            } as u8;
            IpNet::V6(ipnet::Ipv6Net::new(addr.into(), len).unwrap())
        }
        _ => {
            // Mapped IPv4 (::ffff:0:0/96 and longer), and the deprecated compatible form.
            let v4 = u128::from(rng.next() as u32 & 0x0aff_ffff);
            let mapped = if rng.below(4) == 0 {
                v4
            } else {
                0xffff << 32 | v4
            };
            let len = 96 + rng.below(33) as u8;
            IpNet::V6(ipnet::Ipv6Net::new(mapped.into(), len).unwrap())
        }
    }
}

/// Queries that matter: each network's first and last address and their neighbours, plus
/// random addresses near the same anchors, in both the plain and the mapped form.
fn probes(nets: &[IpNet], rng: &mut Rng) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for net in nets {
        match net {
            IpNet::V4(n) => {
                let (lo, hi) = (u32::from(n.network()), u32::from(n.broadcast()));
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    out.push(IpAddr::V4(x.into()));
                    out.push(IpAddr::V6(std::net::Ipv4Addr::from(x).to_ipv6_mapped()));
                }
            }
            IpNet::V6(n) => {
                let (lo, hi) = (u128::from(n.network()), u128::from(n.broadcast()));
                for x in [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)] {
                    out.push(IpAddr::V6(x.into()));
                }
            }
        }
    }
    for _ in 0..64 {
        let net = random_net(rng);
        out.push(net.addr());
    }
    out
}

#[test]
fn lookup_agrees_with_a_linear_scan_on_random_lists() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..300 {
        // Mostly small lists; every tenth large enough for the bucket index.
        let n = if round % 10 == 9 {
            64 + rng.below(700)
        } else {
            rng.below(80)
        } as usize;
        let nets: Vec<IpNet> = (0..n).map(|_| random_net(&mut rng)).collect();
        let set = IpSet::from_nets(nets.iter().copied());
        let linear = |ip: IpAddr| {
            let ip = canonical(ip);
            nets.iter().any(|n| canonical_net(*n).contains(&ip))
        };
        for ip in probes(&nets, &mut rng) {
            assert_eq!(
                set.contains(ip),
                linear(ip),
                "round {round}, {ip}, nets {nets:?}"
            );
        }
    }
}

#[test]
fn bucket_index_handles_clustered_and_extreme_lists() {
    // All in one bucket but one far away; starts at 0 and ranges to the very top.
    let mut nets: Vec<IpNet> = (0..500u32)
        .map(|i| IpNet::V4(Ipv4Net::new((0x0a00_0000 + 4 * i).into(), 31).unwrap()))
        .collect();
    nets.push("0.0.0.0/32".parse().unwrap());
    nets.push("255.255.255.254/31".parse().unwrap());
    nets.push("::/128".parse().unwrap());
    for i in 0..200u128 {
        nets.push(IpNet::V6(
            ipnet::Ipv6Net::new((0x2001_0db8u128 << 96 | i << 64).into(), 64).unwrap(),
        ));
    }
    nets.push("ffff::/16".parse().unwrap());
    let set = IpSet::from_nets(nets.iter().copied());
    for (addr, inside) in [
        ("0.0.0.0", true),
        ("0.0.0.1", false),
        ("10.0.0.1", true),
        ("10.0.0.2", false),
        ("10.0.7.205", true),
        ("10.0.7.206", false),
        ("255.255.255.255", true),
        ("255.255.255.253", false),
        ("::", true),
        ("::1", false),
        ("2001:db8:0:c7::1", true),
        ("2001:db8:0:c8::", false),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
        ("fffe::", false),
    ] {
        assert_eq!(set.contains(ip(addr)), inside, "{addr}");
    }
}

#[test]
fn ipv6_split_table_agrees_with_a_linear_scan() {
    // Few distinct high halves, so that many ranges share them; whole /64s and partial ones.
    let mut rng = Rng(0x6464_6464);
    for round in 0..200 {
        let n = if round % 4 == 3 {
            64 + rng.below(400)
        } else {
            rng.below(70)
        } as usize;
        let his = [0u64, 1, 2, 7, u64::MAX - 1, u64::MAX];
        let pick = |rng: &mut Rng| -> u128 {
            let hi = his[rng.below(his.len() as u64) as usize];
            let lo = [0, u64::MAX, rng.below(16), rng.next()][rng.below(4) as usize];
            u128::from(hi) << 64 | u128::from(lo)
        };
        let nets: Vec<(u128, u128)> = (0..n)
            .map(|_| {
                let a = pick(&mut rng);
                let len = [48, 63, 64, 65, 100, 127, 128][rng.below(7) as usize];
                let mask = u128::MAX.checked_shr(len).unwrap_or(0);
                (a & !mask, a | mask)
            })
            .collect();
        let table = Ranges6::build(nets.clone());
        let mut probes: Vec<u128> = (0..64).map(|_| pick(&mut rng)).collect();
        for &(s, e) in &nets {
            probes.extend([s.wrapping_sub(1), s, e, e.wrapping_add(1)]);
        }
        for x in probes {
            let linear = nets.iter().any(|&(s, e)| s <= x && x <= e);
            assert_eq!(table.contains(x), linear, "round {round}, {x:#x}");
        }
    }
}

#[test]
fn sort_by_start_sorts_every_shape() {
    let mut rng = Rng(0x5151_5151);
    let n = 3000u32;
    let shapes: Vec<Vec<u32>> = vec![
        (0..n).collect(),
        (0..n).rev().collect(),
        vec![7; n as usize],
        (0..n).map(|i| i % 3).collect(),
        (0..n).map(|i| if i < n / 2 { i } else { n - i }).collect(),
        (0..n).map(|_| rng.next() as u32).collect(),
        (0..n).map(|_| rng.below(50) as u32).collect(),
        vec![],
        vec![1],
        vec![2, 1],
    ];
    for (k, shape) in shapes.iter().enumerate() {
        // The introsort, and its heapsort alone (depth 0).
        for depth in [usize::BITS * 2, 0] {
            let mut v: Vec<(u32, u32)> = shape.iter().map(|&x| (x, !x)).collect();
            sort_by_start(&mut v, depth);
            let mut expected: Vec<(u32, u32)> = shape.iter().map(|&x| (x, !x)).collect();
            expected.sort();
            assert_eq!(v, expected, "shape {k}, depth {depth}");
        }
    }
}

#[test]
fn union_holds_the_addresses_of_both_sets_and_stays_merged() {
    let a = set(&["10.0.0.0/24", "192.0.2.0/25", "2001:db8::/48"]);
    let b = set(&[
        "10.0.1.0/24",
        "192.0.2.64/26",
        "198.51.100.7",
        "2001:db8:1::/48",
    ]);
    let u = a.union(&b);
    for ip in [
        "10.0.0.1",
        "10.0.1.255",
        "192.0.2.100",
        "198.51.100.7",
        "2001:db8:1::9",
    ] {
        assert!(u.contains(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["10.0.2.0", "192.0.2.128", "198.51.100.8", "2001:db8:2::"] {
        assert!(!u.contains(ip.parse().unwrap()), "{ip}");
    }
    // 10.0.0.0/24 and 10.0.1.0/24 touch: one range.
    assert_eq!(u.ranges_v4()[0], (0x0a00_0000, 0x0a00_01ff));
    assert!(is_merged(u.ranges_v4()) && is_merged(&u.ranges_v6()));
    assert_eq!(u.range_counts(), (3, 1));
}

#[test]
fn from_merged_round_trips_and_refuses_unsorted_or_overlapping_ranges() {
    let s = set(&["10.0.0.0/8", "192.0.2.1", "::/0"]);
    let back = IpSet::from_merged(s.ranges_v4().to_vec(), s.ranges_v6()).unwrap();
    assert_eq!(back.ranges_v4(), s.ranges_v4());
    assert_eq!(back.ranges_v6(), s.ranges_v6());
    assert!(back.contains("10.9.9.9".parse().unwrap()));
    assert!(IpSet::from_merged(vec![(5, 9), (1, 2)], vec![]).is_none());
    assert!(IpSet::from_merged(vec![(1, 5), (5, 9)], vec![]).is_none());
    assert!(
        IpSet::from_merged(vec![(1, 5), (6, 9)], vec![]).is_none(),
        "adjacent"
    );
    assert!(IpSet::from_merged(vec![(9, 1)], vec![]).is_none());
    assert!(IpSet::from_merged(vec![], vec![(3, 2)]).is_none());
}
