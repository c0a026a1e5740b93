//! The encodings one VM publishes in Envoy's shared data for the others (docs/sources.md, "One fetch per
//! Envoy"): the parsed list ([`Table`]), a small [`Status`] that workers poll every tick, and
//! the fetcher's [`Lease`].
//!
//! A table is `CIPT`, a format version, its list version, entry count, the validators of the
//! response (`ETag`, `Last-Modified`), the IPv4 and IPv6 ranges (inclusive, sorted, merged,
//! little-endian) and a checksum over everything before it. A value that is torn, truncated, of
//! another version or otherwise not exactly that decodes to an error, never to a wrong list.
//!
//! The checksum only catches accidents: every value is also sealed (`seal`, a keyed tag appended
//! by `machine`), so what another module writes under our keys does not even reach [`decode`].

use std::sync::Arc;

use super::geo::{Geo, GeoTable};
use crate::ipset::IpSet;

const MAGIC: &[u8; 4] = b"CIPT";
/// A table of an `mmdb` source (ranges with a country and an AS number each).
const GEO_MAGIC: &[u8; 4] = b"CIPG";
const FORMAT_VERSION: u8 = 1;

/// A parsed list as published.
#[derive(Clone, Debug)]
pub struct Table {
    /// Increases with each accepted body.
    pub version: u64,
    /// Entries in the body (before merging).
    pub entries: u64,
    /// The response's `ETag`.
    pub etag: Option<String>,
    /// The response's `Last-Modified`.
    pub last_modified: Option<String>,
    /// The list, or the database.
    pub content: Content,
}

/// What a source holds: a list of networks, or (an `mmdb` source) a database.
#[derive(Clone, Debug)]
pub enum Content {
    /// Networks.
    Set(IpSet),
    /// Countries and AS numbers by range (docs/geo.md).
    Geo(Arc<GeoTable>),
}

impl Content {
    /// The list of networks (None for a database).
    pub fn set(&self) -> Option<&IpSet> {
        match self {
            Content::Set(s) => Some(s),
            Content::Geo(_) => None,
        }
    }

    /// The database (None for a list).
    pub fn geo(&self) -> Option<&Arc<GeoTable>> {
        match self {
            Content::Geo(g) => Some(g),
            Content::Set(_) => None,
        }
    }
}

/// Why a published value was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a table of this format version.
    Header,
    /// Shorter or longer than its counts say.
    Length,
    /// The checksum does not match.
    Checksum,
    /// Ranges not sorted, disjoint and non-adjacent.
    Ranges,
}

/// A 64-bit checksum over 8-byte words (FNV-style multiply, rotated), fast enough for a
/// 16 MB table in a few milliseconds of wasm.
fn checksum(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ bytes.len() as u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    for &b in words.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn put_text(out: &mut Vec<u8>, text: Option<&str>) {
    let text = text.unwrap_or("");
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Encodes a table.
pub fn encode(table: &Table) -> Vec<u8> {
    let set = match &table.content {
        Content::Set(set) => set,
        Content::Geo(geo) => return encode_geo(table, geo),
    };
    let v4 = set.ranges_v4();
    let v6 = set.ranges_v6();
    let mut out = Vec::with_capacity(64 + v4.len() * 8 + v6.len() * 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
    out.extend_from_slice(&table.version.to_le_bytes());
    out.extend_from_slice(&table.entries.to_le_bytes());
    put_text(&mut out, table.etag.as_deref());
    put_text(&mut out, table.last_modified.as_deref());
    out.extend_from_slice(&(v4.len() as u32).to_le_bytes());
    out.extend_from_slice(&(v6.len() as u32).to_le_bytes());
    for &(s, e) in v4 {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
    }
    for &(s, e) in &v6 {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Reads fixed-size fields off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Length);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| DecodeError::Length)?,
        ))
    }
    fn text(&mut self) -> Result<Option<String>, DecodeError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| DecodeError::Header)?;
        Ok((!s.is_empty()).then(|| s.to_string()))
    }
}

/// Decodes a published table.
pub fn decode(bytes: &[u8]) -> Result<Table, DecodeError> {
    if bytes.starts_with(GEO_MAGIC) {
        return decode_geo(bytes);
    }
    decode_parts(bytes)?.into_table()
}

/// [`decode`], taking the bytes: they are freed before the lookup tables are built, which lowers
/// the peak memory of adopting a list (WebAssembly memory never shrinks: a VM keeps its peak).
pub fn decode_owned(bytes: Vec<u8>) -> Result<Table, DecodeError> {
    if bytes.starts_with(GEO_MAGIC) {
        return decode_geo(&bytes);
    }
    let parts = decode_parts(&bytes)?;
    drop(bytes);
    parts.into_table()
}

/// A table's fields and ranges, read and checked, before the ranges are indexed.
struct Parts {
    version: u64,
    entries: u64,
    etag: Option<String>,
    last_modified: Option<String>,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl Parts {
    fn into_table(self) -> Result<Table, DecodeError> {
        let set = IpSet::from_merged(self.v4, self.v6).ok_or(DecodeError::Ranges)?;
        Ok(Table {
            version: self.version,
            entries: self.entries,
            etag: self.etag,
            last_modified: self.last_modified,
            content: Content::Set(set),
        })
    }
}

fn decode_parts(bytes: &[u8]) -> Result<Parts, DecodeError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC || bytes[4] != FORMAT_VERSION {
        return Err(DecodeError::Header);
    }
    if bytes.len() < 16 {
        return Err(DecodeError::Length);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut r = Reader(body);
    r.take(8)?;
    let version = r.u64()?;
    let entries = r.u64()?;
    let etag = r.text()?;
    let last_modified = r.text()?;
    let (n4, n6) = (r.u32()? as usize, r.u32()? as usize);
    let expected = n4
        .checked_mul(8)
        .and_then(|a| n6.checked_mul(32).and_then(|b| a.checked_add(b)));
    if expected != Some(r.0.len()) {
        return Err(DecodeError::Length);
    }
    if checksum(body).to_le_bytes() != sum {
        return Err(DecodeError::Checksum);
    }
    // One tight pass per table (this runs on every worker for every new list: no per-field calls).
    let (v4_bytes, v6_bytes) = r.0.split_at(n4 * 8);
    let v4: Vec<(u32, u32)> = v4_bytes
        .chunks_exact(8)
        .map(|c| {
            (
                u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    let v6: Vec<(u128, u128)> = v6_bytes
        .chunks_exact(32)
        .map(|c| {
            let mut s = [0u8; 16];
            let mut e = [0u8; 16];
            s.copy_from_slice(&c[..16]);
            e.copy_from_slice(&c[16..]);
            (u128::from_le_bytes(s), u128::from_le_bytes(e))
        })
        .collect();
    Ok(Parts {
        version,
        entries,
        etag,
        last_modified,
        v4,
        v6,
    })
}

fn put_geo(out: &mut Vec<u8>, geo: &Geo) {
    out.extend_from_slice(&geo.country.unwrap_or([0, 0]));
    out.extend_from_slice(&geo.asn.unwrap_or(0).to_le_bytes());
}

/// A database's table: `CIPG`, the format version, the list version, entries, validators, the
/// counts of IPv4 rows, IPv6 rows and IPv4 aliases, the rows (first, last, country or `00`, AS
/// number or 0), the aliases (prefix, length) and the checksum.
fn encode_geo(table: &Table, geo: &GeoTable) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + geo.v4.len() * 14 + geo.v6.len() * 38);
    out.extend_from_slice(GEO_MAGIC);
    out.extend_from_slice(&[FORMAT_VERSION, 0, 0, 0]);
    out.extend_from_slice(&table.version.to_le_bytes());
    out.extend_from_slice(&table.entries.to_le_bytes());
    put_text(&mut out, table.etag.as_deref());
    put_text(&mut out, table.last_modified.as_deref());
    for n in [geo.v4.len(), geo.v6.len(), geo.aliases.len()] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for (s, e, g) in &geo.v4 {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        put_geo(&mut out, g);
    }
    for (s, e, g) in &geo.v6 {
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&e.to_le_bytes());
        put_geo(&mut out, g);
    }
    for (p, l) in &geo.aliases {
        out.extend_from_slice(&p.to_le_bytes());
        out.push(*l);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn geo_of(b: &[u8]) -> Result<Geo, DecodeError> {
    let country = match [b[0], b[1]] {
        [0, 0] => None,
        c if c.iter().all(u8::is_ascii_uppercase) => Some(c),
        _ => return Err(DecodeError::Ranges),
    };
    let asn = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    Ok(Geo {
        country,
        asn: (asn != 0).then_some(asn),
    })
}

fn u128_of(b: &[u8]) -> u128 {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[..16]);
    u128::from_le_bytes(x)
}

fn decode_geo(bytes: &[u8]) -> Result<Table, DecodeError> {
    if bytes.len() < 8 || bytes[4] != FORMAT_VERSION {
        return Err(DecodeError::Header);
    }
    if bytes.len() < 16 {
        return Err(DecodeError::Length);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut r = Reader(body);
    r.take(8)?;
    let version = r.u64()?;
    let entries = r.u64()?;
    let etag = r.text()?;
    let last_modified = r.text()?;
    let (n4, n6, na) = (r.u32()? as usize, r.u32()? as usize, r.u32()? as usize);
    let expected = n4
        .checked_mul(14)
        .zip(n6.checked_mul(38))
        .zip(na.checked_mul(17))
        .and_then(|((a, b), c)| a.checked_add(b)?.checked_add(c));
    if expected != Some(r.0.len()) {
        return Err(DecodeError::Length);
    }
    if checksum(body).to_le_bytes() != sum {
        return Err(DecodeError::Checksum);
    }
    let mut geo = GeoTable::default();
    for c in r.take(n4 * 14)?.chunks_exact(14) {
        let s = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        let e = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
        geo.v4.push((s, e, geo_of(&c[8..])?));
    }
    for c in r.take(n6 * 38)?.chunks_exact(38) {
        geo.v6
            .push((u128_of(c), u128_of(&c[16..]), geo_of(&c[32..])?));
    }
    for c in r.take(na * 17)?.chunks_exact(17) {
        geo.aliases.push((u128_of(c), c[16]));
    }
    let sorted4 = geo.v4.windows(2).all(|w| w[0].1 < w[1].0) && geo.v4.iter().all(|r| r.0 <= r.1);
    let sorted6 = geo.v6.windows(2).all(|w| w[0].1 < w[1].0) && geo.v6.iter().all(|r| r.0 <= r.1);
    if !sorted4 || !sorted6 || geo.aliases.iter().any(|a| a.1 == 0 || a.1 > 96) {
        return Err(DecodeError::Ranges);
    }
    Ok(Table {
        version,
        entries,
        etag,
        last_modified,
        content: Content::Geo(Arc::new(geo)),
    })
}

/// What workers poll each tick (a few bytes: cheap to copy under Envoy's lock): the version of
/// the published table and when the last good body arrived (a 304 renews it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// The published table's version (0: none yet).
    pub version: u64,
    /// When the last good body or 304 arrived (ms since the epoch; 0: never).
    pub last_good_ms: u64,
    /// Entries of the published table.
    pub entries: u64,
}

impl Status {
    /// 24 bytes, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        [self.version, self.last_good_ms, self.entries]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    /// None unless exactly 24 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Status> {
        if bytes.len() != 24 {
            return None;
        }
        let mut r = Reader(bytes);
        Some(Status {
            version: r.u64().ok()?,
            last_good_ms: r.u64().ok()?,
            entries: r.u64().ok()?,
        })
    }

    /// The last good time, when there is one.
    pub fn last_good(&self) -> Option<u64> {
        (self.last_good_ms != 0).then_some(self.last_good_ms)
    }
}

/// The fetcher's lease: which VM fetches this configuration's sources, until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The holder's random token.
    pub holder: u64,
    /// When the lease lapses unless renewed (ms since the epoch).
    pub expires_ms: u64,
}

impl Lease {
    /// 16 bytes, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.holder.to_le_bytes().to_vec();
        out.extend_from_slice(&self.expires_ms.to_le_bytes());
        out
    }

    /// None unless exactly 16 bytes.
    pub fn decode(bytes: &[u8]) -> Option<Lease> {
        if bytes.len() != 16 {
            return None;
        }
        let mut r = Reader(bytes);
        Some(Lease {
            holder: r.u64().ok()?,
            expires_ms: r.u64().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipset::parse_net;

    fn table() -> Table {
        let set = IpSet::from_nets(
            [
                "10.0.0.0/8",
                "192.0.2.7",
                "2001:db8::/32",
                "2600:9000::1/128",
            ]
            .iter()
            .map(|s| parse_net(s).unwrap().0),
        );
        Table {
            version: 7,
            entries: 4,
            etag: Some("\"5f3a-1\"".into()),
            last_modified: None,
            content: Content::Set(set),
        }
    }

    #[test]
    fn a_table_round_trips() {
        let t = table();
        let back = decode(&encode(&t)).unwrap();
        assert_eq!((back.version, back.entries), (7, 4));
        assert_eq!(back.etag.as_deref(), Some("\"5f3a-1\""));
        assert_eq!(back.last_modified, None);
        assert_eq!(
            back.content.set().unwrap().ranges_v4(),
            t.content.set().unwrap().ranges_v4()
        );
        assert_eq!(
            back.content.set().unwrap().ranges_v6(),
            t.content.set().unwrap().ranges_v6()
        );
        assert!(back
            .content
            .set()
            .unwrap()
            .contains("2600:9000::1".parse().unwrap()));
    }

    #[test]
    fn a_truncated_or_extended_table_is_refused() {
        let bytes = encode(&table());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn decode_owned_is_decode() {
        let bytes = encode(&table());
        let a = decode(&bytes).unwrap();
        let b = decode_owned(bytes.clone()).unwrap();
        assert_eq!(encode(&a), encode(&b));
        assert!(decode_owned(bytes[..bytes.len() - 1].to_vec()).is_err());
    }

    #[test]
    fn a_flipped_byte_is_refused() {
        let bytes = encode(&table());
        for at in 0..bytes.len() {
            let mut torn = bytes.clone();
            torn[at] ^= 0x40;
            assert!(decode(&torn).is_err(), "byte {at}");
        }
    }

    #[test]
    fn another_format_version_is_refused() {
        let mut bytes = encode(&table());
        bytes[4] = 2;
        assert_eq!(decode(&bytes).unwrap_err(), DecodeError::Header);
        assert_eq!(
            decode(b"garbage!garbage!").unwrap_err(),
            DecodeError::Header
        );
    }

    #[test]
    fn status_and_lease_round_trip_and_refuse_other_sizes() {
        let s = Status {
            version: 3,
            last_good_ms: 1_700_000_000_000,
            entries: 9,
        };
        assert_eq!(Status::decode(&s.encode()), Some(s));
        assert_eq!(Status::decode(&s.encode()[..23]), None);
        assert_eq!(Status::default().last_good(), None);
        let l = Lease {
            holder: 42,
            expires_ms: 99,
        };
        assert_eq!(Lease::decode(&l.encode()), Some(l));
        assert_eq!(Lease::decode(&[0; 15]), None);
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        // fuzz/corpus/source/table1 (after its selector byte) was written from the module
        // documentation by a separate implementation: the same bytes decode here.
        let seed = include_bytes!("../../fuzz/corpus/source/table1");
        let t = decode(&seed[1..]).unwrap();
        assert_eq!((t.version, t.entries), (3, 2));
        assert_eq!(t.etag.as_deref(), Some("\"abc\""));
        assert!(t
            .content
            .set()
            .unwrap()
            .contains("10.1.2.3".parse().unwrap()));
        assert!(t
            .content
            .set()
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert_eq!(encode(&t), &seed[1..]);
    }
}
