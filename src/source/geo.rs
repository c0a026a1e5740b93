//! The country and network owner of addresses (docs/geo.md): a table of ranges, each with a
//! country code (2 bytes) and an AS number, read from a MaxMind DB file (`mmdb`) once per Envoy.
//!
//! The same shape as the IP sets: sorted, disjoint ranges and a binary search. Lists do not look
//! up this table per request: `country:`/`asn:` entries become plain IP sets when the policy is
//! bound ([`GeoTable::select`]), so such a list costs one list lookup. Only the headers and the
//! filter state look an address up here ([`GeoTable::lookup`]).

use std::net::IpAddr;

use crate::addr::canonical;
use crate::ipset::IpSet;

/// What the database says of an address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Geo {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    /// The AS number (1–4294967295).
    pub asn: Option<u32>,
}

impl Geo {
    /// The country as text.
    pub fn country_code(&self) -> Option<&str> {
        self.country
            .as_ref()
            .and_then(|c| std::str::from_utf8(c).ok())
    }
}

/// What a list entry selects from a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pick {
    /// `country:XX` entries: these codes.
    Countries(Vec<[u8; 2]>),
    /// `asn:N` entries: these numbers.
    Asns(Vec<u32>),
}

impl Pick {
    fn takes(&self, geo: &Geo) -> bool {
        match self {
            Pick::Countries(c) => geo.country.is_some_and(|g| c.contains(&g)),
            Pick::Asns(a) => geo.asn.is_some_and(|g| a.contains(&g)),
        }
    }
}

/// A parsed database: IPv4 and IPv6 ranges with their values, and the IPv6 prefixes under which
/// an IPv6 database repeats its IPv4 subtree (`::/96`, `::ffff:0:0/96`, `2002::/16`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoTable {
    pub(crate) v4: Vec<(u32, u32, Geo)>,
    pub(crate) v6: Vec<(u128, u128, Geo)>,
    /// (prefix, length): the 32 bits after the prefix are an IPv4 address.
    pub(crate) aliases: Vec<(u128, u8)>,
}

fn find<T: Copy + Ord>(rows: &[(T, T, Geo)], ip: T) -> Option<Geo> {
    let i = rows.partition_point(|r| r.0 <= ip);
    let row = rows.get(i.checked_sub(1)?)?;
    (ip <= row.1).then_some(row.2)
}

impl GeoTable {
    /// Appends an IPv4 range (in address order), merged with the last when adjacent and equal.
    pub(crate) fn push_v4(&mut self, first: u128, last: u128, geo: Geo) -> Result<(), String> {
        let (first, last) = (first as u32, last as u32);
        if let Some(prev) = self.v4.last_mut() {
            if prev.2 == geo && prev.1.checked_add(1) == Some(first) {
                prev.1 = last;
                return Ok(());
            }
        }
        self.v4.push((first, last, geo));
        Ok(())
    }

    /// Appends an IPv6 range (in address order).
    pub(crate) fn push_v6(&mut self, first: u128, last: u128, geo: Geo) -> Result<(), String> {
        if let Some(prev) = self.v6.last_mut() {
            if prev.2 == geo && prev.1.checked_add(1) == Some(first) {
                prev.1 = last;
                return Ok(());
            }
        }
        self.v6.push((first, last, geo));
        Ok(())
    }

    /// Sets the IPv4 aliases of an IPv6 database.
    pub(crate) fn set_aliases(&mut self, aliases: Vec<(u128, u8)>) {
        self.aliases = aliases;
    }

    /// True when the table holds no range.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Ranges held (IPv4 + IPv6).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// What the database says of `ip` (mapped IPv4 addresses are looked up as IPv4).
    pub fn lookup(&self, ip: IpAddr) -> Geo {
        match canonical(ip) {
            IpAddr::V4(v4) => find(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let alias = self.aliases.iter().find(|&&(prefix, len)| {
                    let len = u32::from(len);
                    len > 0 && len <= 96 && bits >> (128 - len) == prefix
                });
                match alias {
                    Some(&(_, len)) => find(&self.v4, (bits >> (96 - u32::from(len))) as u32),
                    None => find(&self.v6, bits),
                }
            }
        }
        .unwrap_or_default()
    }

    /// The addresses whose value `pick` takes, as an IP set (the IPv4 ranges also under each
    /// IPv6 alias).
    pub fn select(&self, pick: &Pick) -> IpSet {
        let v4: Vec<(u32, u32)> = self
            .v4
            .iter()
            .filter(|r| pick.takes(&r.2))
            .map(|r| (r.0, r.1))
            .collect();
        let mut v6: Vec<(u128, u128)> = self
            .v6
            .iter()
            .filter(|r| pick.takes(&r.2))
            .map(|r| (r.0, r.1))
            .collect();
        for &(prefix, len) in &self.aliases {
            let len = u32::from(len);
            if len == 0 || len > 96 {
                continue;
            }
            let shift = 96 - len;
            let base = prefix << (128 - len);
            let low = if shift == 0 { 0 } else { (1u128 << shift) - 1 };
            v6.extend(v4.iter().map(|&(s, e)| {
                (
                    base | (u128::from(s) << shift),
                    base | (u128::from(e) << shift) | low,
                )
            }));
        }
        IpSet::from_ranges(v4, v6)
    }
}
