//! The MaxMind DB reader against databases written here, byte by byte (a small writer of the
//! format: maps, strings, unsigned integers, pointers; trees of 24, 28 and 32 bit records).

use std::net::IpAddr;

use super::mmdb::{read, Fields};

/// A data section value.
pub(crate) enum V {
    Map(Vec<(&'static str, V)>),
    Str(String),
    U32(u32),
    /// A pointer to an offset of the data section.
    Ptr(u32),
}

fn ctrl(out: &mut Vec<u8>, kind: u8, size: usize) {
    let (t, ext) = if kind > 7 {
        (0u8, Some(kind - 7))
    } else {
        (kind, None)
    };
    let first = |s: u8| (t << 5) | s;
    match size {
        0..=28 => out.push(first(size as u8)),
        29..=284 => out.extend([first(29), (size - 29) as u8]),
        _ => {
            let n = size - 285;
            out.extend([first(30), (n >> 8) as u8, n as u8]);
        }
    }
    if let Some(e) = ext {
        let at = out.len()
            - if size <= 28 {
                0
            } else if size <= 284 {
                1
            } else {
                2
            };
        out.insert(at, e);
    }
}

pub(crate) fn encode(v: &V, out: &mut Vec<u8>) {
    match v {
        V::Map(pairs) => {
            ctrl(out, 7, pairs.len());
            for (k, v) in pairs {
                encode(&V::Str(k.to_string()), out);
                encode(v, out);
            }
        }
        V::Str(s) => {
            ctrl(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        V::U32(n) => {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            ctrl(out, 6, 4 - skip);
            out.extend_from_slice(&bytes[skip..]);
        }
        V::Ptr(p) => {
            // 32-bit form.
            out.push((1 << 5) | (3 << 3));
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
}

/// A database: networks (address, prefix length, index into `records`), the records, the IP
/// version and record size.
pub(crate) fn database(
    nets: &[(&str, u32, usize)],
    records: &[V],
    ip_version: u32,
    record_size: u32,
) -> Vec<u8> {
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for r in records {
        offsets.push(data.len());
        encode(r, &mut data);
    }
    database_of(nets, &data, &offsets, ip_version, record_size)
}

/// A database whose data section is `data` as given; network `k` of `nets` points at
/// `offsets[nets[k].2]`.
pub(crate) fn database_of(
    nets: &[(&str, u32, usize)],
    data: &[u8],
    offsets: &[usize],
    ip_version: u32,
    record_size: u32,
) -> Vec<u8> {
    let bits = if ip_version == 4 { 32 } else { 128 };
    // Trie: nodes of [left, right]; a child is Node(i), Data(record) or Empty.
    #[derive(Clone, Copy)]
    enum C {
        N(usize),
        D(usize),
        E,
    }
    let mut nodes: Vec<[C; 2]> = vec![[C::E, C::E]];
    for &(addr, len, rec) in nets {
        let ip: IpAddr = addr.parse().unwrap();
        let value: u128 = match ip {
            IpAddr::V4(v4) if bits == 32 => u128::from(u32::from(v4)),
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let mut node = 0;
        for d in 0..len {
            let bit = ((value >> (bits - 1 - d)) & 1) as usize;
            if d + 1 == len {
                nodes[node][bit] = C::D(rec);
            } else {
                node = match nodes[node][bit] {
                    C::N(n) => n,
                    _ => {
                        nodes.push([C::E, C::E]);
                        let n = nodes.len() - 1;
                        nodes[node][bit] = C::N(n);
                        n
                    }
                };
            }
        }
    }
    let count = nodes.len() as u32;
    let val = |c: C| match c {
        C::N(n) => n as u32,
        C::E => count,
        C::D(r) => count + 16 + offsets[r] as u32,
    };
    let mut out = Vec::new();
    for n in &nodes {
        let (l, r) = (val(n[0]), val(n[1]));
        match record_size {
            24 => {
                out.extend_from_slice(&l.to_be_bytes()[1..]);
                out.extend_from_slice(&r.to_be_bytes()[1..]);
            }
            28 => {
                out.extend_from_slice(&l.to_be_bytes()[1..]);
                out.push((((l >> 24) & 0xf) << 4) as u8 | ((r >> 24) & 0xf) as u8);
                out.extend_from_slice(&r.to_be_bytes()[1..]);
            }
            _ => {
                out.extend_from_slice(&l.to_be_bytes());
                out.extend_from_slice(&r.to_be_bytes());
            }
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    encode(
        &V::Map(vec![
            ("node_count", V::U32(count)),
            ("record_size", V::U32(record_size)),
            ("ip_version", V::U32(ip_version)),
            ("database_type", V::Str("test".into())),
        ]),
        &mut out,
    );
    out
}

fn country(code: &str) -> V {
    V::Map(vec![(
        "country",
        V::Map(vec![("iso_code", V::Str(code.into()))]),
    )])
}

fn fields() -> Fields {
    Fields {
        country: Some(vec!["country".into(), "iso_code".into()]),
        asn: None,
    }
}

fn asn_fields() -> Fields {
    Fields {
        country: None,
        asn: Some(vec!["autonomous_system_number".into()]),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sample(ip_version: u32, record_size: u32) -> Vec<u8> {
    database(
        &[
            ("1.2.3.0", if ip_version == 4 { 24 } else { 120 }, 0),
            ("10.0.0.0", if ip_version == 4 { 8 } else { 104 }, 1),
        ],
        &[country("kp"), country("DE")],
        ip_version,
        record_size,
    )
}

#[test]
fn countries_are_read_in_each_record_size() {
    for size in [24, 28, 32] {
        let t = read(&sample(4, size), &fields(), 100).unwrap();
        assert_eq!(t.lookup(ip("1.2.3.4")).country_code(), Some("KP"), "{size}");
        assert_eq!(t.lookup(ip("10.9.8.7")).country_code(), Some("DE"));
        assert_eq!(t.lookup(ip("1.2.4.1")).country, None);
        assert_eq!(t.lookup(ip("::ffff:1.2.3.9")).country_code(), Some("KP"));
    }
}

#[test]
fn the_ipv4_subtree_of_an_ipv6_tree_is_read_and_its_aliases_followed() {
    // ::/96 holds IPv4; ::ffff:0:0/96 and 2002::/16 point at the same node as a writer aliases them.
    let mut db = database(
        &[("::1.2.3.0", 120, 0), ("2001:db8::", 32, 1)],
        &[country("KP"), country("DE")],
        6,
        28,
    );
    let t = read(&db, &fields(), 100).unwrap();
    assert_eq!(t.lookup(ip("1.2.3.4")).country_code(), Some("KP"));
    assert_eq!(t.lookup(ip("2001:db8::5")).country_code(), Some("DE"));
    assert_eq!(t.lookup(ip("2001:db9::5")).country, None);
    db.clear();
}

#[test]
fn a_pointer_to_a_shared_record_is_followed() {
    let db = database(
        &[("1.0.0.0", 8, 0), ("2.0.0.0", 8, 1)],
        &[country("FR"), V::Ptr(0)],
        4,
        24,
    );
    let t = read(&db, &fields(), 100).unwrap();
    assert_eq!(t.lookup(ip("2.3.4.5")).country_code(), Some("FR"));
    assert_eq!(t.v4.len(), 1, "adjacent equal ranges merge");
}

#[test]
fn asn_is_read_as_an_unsigned_integer() {
    let db = database(
        &[("8.8.8.0", 24, 0)],
        &[V::Map(vec![
            ("autonomous_system_number", V::U32(15169)),
            ("autonomous_system_organization", V::Str("GOOGLE".into())),
        ])],
        4,
        32,
    );
    let t = read(&db, &asn_fields(), 100).unwrap();
    assert_eq!(t.lookup(ip("8.8.8.8")).asn, Some(15169));
}

#[test]
fn a_database_lacking_the_field_everywhere_is_refused() {
    let e = read(&sample(4, 24), &asn_fields(), 100).unwrap_err();
    assert!(e.contains("asn_field"), "{e}");
}

#[test]
fn a_file_without_the_metadata_marker_is_refused() {
    let e = read(b"not a database", &fields(), 100).unwrap_err();
    assert!(e.contains("marker"), "{e}");
}

#[test]
fn a_bad_record_size_is_refused() {
    let mut db = sample(4, 24);
    let at = db.windows(11).position(|w| w == b"record_size").unwrap();
    db[at + 12] = 20; // uint32 of one byte: 24 -> 20
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("record_size 20"), "{e}");
}

#[test]
fn a_huge_node_count_is_refused() {
    let mut db = sample(4, 24);
    let at = db.windows(10).position(|w| w == b"node_count").unwrap();
    db[at + 10] = (6 << 5) | 4;
    db.splice(at + 11..at + 12, [0x7f, 0xff, 0xff, 0xff]);
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("larger than the file"), "{e}");
}

#[test]
fn every_truncation_is_refused_or_read_never_a_panic() {
    let db = sample(6, 28);
    for n in 0..db.len() {
        let _ = read(&db[..n], &fields(), 100);
        let mut cut = db.clone();
        cut.drain(n / 2..n);
        let _ = read(&cut, &fields(), 100);
    }
}

#[test]
fn a_cycle_in_the_search_tree_is_refused() {
    let mut db = sample(4, 32);
    // Node 0's both records point back at node 0.
    db[..8].copy_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("deeper") || e.contains("cycle"), "{e}");
}

#[test]
fn a_pointer_cycle_is_refused() {
    let db = database(&[("1.0.0.0", 8, 0)], &[V::Ptr(0)], 4, 24);
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("pointers in a row"), "{e}");
}

#[test]
fn more_ranges_than_max_entries_are_refused() {
    let e = read(&sample(4, 24), &fields(), 1).unwrap_err();
    assert!(e.contains("max_entries"), "{e}");
}

#[test]
fn a_record_pointing_outside_the_data_section_is_refused() {
    let mut db = sample(4, 32);
    db[4..8].copy_from_slice(&0x00ff_ffffu32.to_be_bytes());
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("outside the data section"), "{e}");
}

#[test]
fn records_nested_in_one_another_are_refused_before_the_work_grows_with_the_square_of_the_file() {
    // One map nested 3000 deep, {"a": {"a": {...}}}, and a network pointing at each level: each
    // level is a record, and looking the country up in one skips every level below it.
    const DEPTH: usize = 3000;
    let mut data = Vec::new();
    let mut offsets = Vec::new();
    for _ in 0..DEPTH {
        offsets.push(data.len());
        data.extend_from_slice(&[(7 << 5) | 1, (2 << 5) | 1, b'a']);
    }
    data.extend_from_slice(&[(2 << 5) | 2, b'K', b'P']);
    let nets: Vec<(String, usize)> = (0..DEPTH)
        .map(|k| (format!("{}.{}.0.0", 1 + k / 256, k % 256), k))
        .collect();
    let nets: Vec<(&str, u32, usize)> = nets.iter().map(|(a, k)| (a.as_str(), 16, *k)).collect();
    let db = super::mmdb_tests::database_of(&nets, &data, &offsets, 4, 24);
    let fields = Fields {
        country: Some(vec!["a".into(); DEPTH]),
        asn: None,
    };
    let e = read(&db, &fields, 1_000_000).unwrap_err();
    assert!(e.contains("values per byte"), "{e}");
    // The same records, a few of them, are read.
    let small = super::mmdb_tests::database_of(&nets[..1], &data, &offsets, 4, 24);
    let t = read(&small, &fields, 1_000_000).unwrap();
    assert_eq!(t.lookup(ip("1.0.0.1")).country_code(), Some("KP"));
}

#[test]
fn the_middle_byte_of_a_28_bit_node_gives_each_record_its_top_bits() {
    // Node 0's left record, plus 2^24 in its top nibble, points far past the data section; the
    // right record's nibble is the low half of the same byte.
    let mut db = sample(4, 28);
    db[3] |= 0x10;
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("outside the data section"), "{e}");
    let mut db = sample(4, 28);
    db[3] |= 0x01;
    let e = read(&db, &fields(), 100).unwrap_err();
    assert!(e.contains("outside the data section"), "{e}");
}
