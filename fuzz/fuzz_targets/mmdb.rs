//! A MaxMind DB file (docs/geo.md) read into the filter's range table (`source::mmdb::read`), as
//! an `mmdb` source's body is. The first byte picks the fields and `max_entries`; the rest is the
//! file. Never panics (libFuzzer's -rss_limit_mb and -timeout bound memory and time); a file
//! accepted holds between 1 and `max_entries` ranges, survives the shared-data table unchanged,
//! and every address probed (the first and last address of the tree's leaves and their
//! neighbours, and a few fixed ones) gets the country and AS number that `mmdb_reference`, an
//! independent per-address walk written from the format's description, reads.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use client_ip_core::source::geo::GeoTable;
use client_ip_core::source::mmdb::{read, Fields};
use client_ip_core::source::table::{decode, encode, Content, Table};
use libfuzzer_sys::fuzz_target;

#[path = "../mmdb_reference.rs"]
mod mmdb_reference;

const COUNTRY: [&[&str]; 2] = [&["country_code"], &["country", "iso_code"]];
const ASN: &[&str] = &["autonomous_system_number"];

fn probes(db: &mmdb_reference::Db) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [
        "0.0.0.0",
        "255.255.255.255",
        "1.2.3.4",
        "10.0.0.1",
        "::",
        "::1",
        "::ffff:1.2.3.4",
        "2002:102:304::1",
        "2001:db8::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for (first, last) in db.leaves(64) {
        for x in [first.wrapping_sub(1), first, last, last.wrapping_add(1)] {
            if db.ipv6() {
                out.push(IpAddr::V6(Ipv6Addr::from(x)));
                if x >> 32 == 0 {
                    out.push(IpAddr::V4(Ipv4Addr::from(x as u32)));
                }
            } else {
                out.push(IpAddr::V4(Ipv4Addr::from(x as u32)));
            }
        }
    }
    out
}

/// The table as the workers get it: encoded into shared data and decoded.
fn published(table: GeoTable) -> Arc<GeoTable> {
    let bytes = encode(&Table {
        version: 1,
        entries: table.len() as u64,
        etag: None,
        last_modified: None,
        content: Content::Geo(Arc::new(table.clone())),
    });
    let back = decode(&bytes).expect("a table the reader built decodes");
    let geo = back
        .content
        .geo()
        .expect("a geo table decodes as one")
        .clone();
    assert_eq!(*geo, table, "the shared-data table is the table");
    geo
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    let country = match which & 3 {
        0 => None,
        k => Some(COUNTRY[usize::from(k - 1) % 2]),
    };
    let asn = (which & 4 != 0 || country.is_none()).then_some(ASN);
    let max_entries = [1usize, 4, 64, 100_000][usize::from(which >> 3) & 3];
    let fields = Fields {
        country: country.map(|p| p.iter().map(|s| s.to_string()).collect()),
        asn: asn.map(|p| p.iter().map(|s| s.to_string()).collect()),
    };
    let Ok(table) = read(file, &fields, max_entries) else {
        return;
    };
    assert!(
        (1..=max_entries).contains(&table.len()),
        "{} ranges",
        table.len()
    );
    let table = published(table);
    let db = mmdb_reference::Db::open(file).expect("a file the reader took is a database");
    for ip in probes(&db) {
        // The oracle cannot say where the file breaks the format on the address's path, which
        // the reader may not need to read (a value it skips): only definite answers compare.
        let Ok((c, a)) = db.lookup(ip, country, asn) else {
            continue;
        };
        let got = table.lookup(ip);
        assert_eq!((got.country, got.asn), (c, a), "{ip}");
    }
});
