//! The crate comparison's variant of `src/source/mmdb.rs` (docs/geo.md, "Why our own reader";
//! `make geo-compare`, bench/geo_reader_compare.py): the same interface, built on the `maxminddb`
//! crate instead of our own walk. Never part of the filter: the comparison copies the tree into
//! target/geo-variant/, puts this file in place of src/source/mmdb.rs and adds the crate there.
//!
//! Each network of the tree comes from the crate's `within` iterator with its record decoded into
//! a `serde_json::Value` (the fields are dotted paths chosen by the configuration, so no fixed
//! struct fits), and goes into the same range table. The crate's iterator skips the networks that
//! alias the IPv4 subtree and says nowhere where they are: the variant probes the two usual
//! prefixes (`::ffff:0:0/96`, `2002::/16`) with lookups.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde_json::Value;

use super::geo::{Geo, GeoTable};

/// The fields of a record to read: dotted paths (`country.iso_code`, `autonomous_system_number`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The path of the country code (ISO 3166-1 alpha-2).
    pub country: Option<Vec<String>>,
    /// The path of the AS number.
    pub asn: Option<Vec<String>>,
}

/// Why a file is not a database we take.
pub type Refusal = String;

fn at<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn geo_of(v: &Value, fields: &Fields) -> Geo {
    let country = fields
        .country
        .as_ref()
        .and_then(|p| at(v, p))
        .and_then(Value::as_str)
        .and_then(|s| match s.as_bytes() {
            &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => None,
        });
    let asn = fields
        .asn
        .as_ref()
        .and_then(|p| at(v, p))
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n > 0);
    Geo { country, asn }
}

/// Reads a database into its table: at most `max_entries` ranges, `fields` read from each record.
pub fn read(file: &[u8], fields: &Fields, max_entries: usize) -> Result<GeoTable, Refusal> {
    let reader = maxminddb::Reader::from_source(file).map_err(|e| e.to_string())?;
    let v6 = reader.metadata.ip_version == 6;
    let all: IpNetwork = if v6 { "::/0" } else { "0.0.0.0/0" }.parse().unwrap();
    let mut table = GeoTable::default();
    let (mut ranges, mut country_seen, mut asn_seen) = (0usize, false, false);
    for item in reader.within::<Value>(all).map_err(|e| e.to_string())? {
        let item = item.map_err(|e| e.to_string())?;
        let geo = geo_of(&item.info, fields);
        country_seen |= geo.country.is_some();
        asn_seen |= geo.asn.is_some();
        if geo == Geo::default() {
            continue;
        }
        ranges += 1;
        if ranges > max_entries {
            return Err(format!("more than max_entries ({max_entries}) ranges"));
        }
        match item.ip_net {
            IpNetwork::V4(n) => table.push_v4(
                u128::from(u32::from(n.network())),
                u128::from(u32::from(n.broadcast())),
                geo,
            )?,
            IpNetwork::V6(n) => {
                let first = u128::from(n.network());
                let len = u32::from(n.prefix());
                let last = first | u128::MAX.checked_shr(len).unwrap_or(0);
                if len >= 96 && first >> 32 == 0 {
                    table.push_v4(first & 0xffff_ffff, last & 0xffff_ffff, geo)?;
                } else {
                    table.push_v6(first, last, geo)?;
                }
            }
        }
    }
    if fields.country.is_some() && !country_seen || fields.asn.is_some() && !asn_seen {
        return Err("no record of the database has the named field".into());
    }
    if table.is_empty() {
        return Err("the database holds no address with the named fields".into());
    }
    if v6 {
        let mut aliases = vec![(0u128, 96u8)];
        let probe = |ip: &str| -> Option<Value> {
            reader
                .lookup::<Value>(ip.parse::<IpAddr>().ok()?)
                .ok()
                .flatten()
        };
        let v4 = ["1.1.1.1", "8.8.8.8", "193.0.6.139"].map(probe);
        for (prefix, len, probes) in [
            (
                0xffffu128,
                96u8,
                ["::ffff:1.1.1.1", "::ffff:8.8.8.8", "::ffff:193.0.6.139"],
            ),
            (
                0x2002,
                16,
                ["2002:101:101::", "2002:808:808::", "2002:c100:68b::"],
            ),
        ] {
            let got = probes.map(probe);
            if got == v4 && v4.iter().any(Option::is_some) {
                aliases.push((prefix, len));
            }
        }
        table.set_aliases(aliases);
    }
    Ok(table)
}
