//! Reading a MaxMind DB file (`.mmdb`: GeoLite2, DB-IP, IPinfo, ip-location-db) into a
//! [`GeoTable`] (docs/geo.md): the country code and AS number of every range of addresses the
//! database holds, as sorted ranges for a binary search (the same shape as the IP sets).
//!
//! Our own small tree walk, not the `maxminddb` crate: we read two fields once per file and never
//! look up an address in the file itself (the table is built in one walk of the tree), so a
//! general reader with per-address lookups and serde decoding is more than we need (docs/geo.md).
//!
//! The file is untrusted: every offset is checked, nothing recurses, pointers are followed a
//! bounded number of times, the tree walk visits a bounded number of nodes (a cycle or a tree of
//! aliases that would blow up is refused) and the table has at most `max_entries` ranges. A file
//! that is not exactly a database is refused with the reason, never a panic.

use std::cell::Cell;
use std::collections::HashMap;

use super::geo::{Geo, GeoTable};

/// The marker before the metadata section.
const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The metadata is within this many bytes of the end.
const METADATA_WINDOW: usize = 128 * 1024;
/// Pointers followed in a row before a value is refused.
const MAX_POINTER_HOPS: u32 = 4;
/// The values decoded while reading a file, at most this many per byte of its data section
/// (plus [`WORK_FLOOR`]): records that share bytes (a map nested in a map, each a record of its
/// own) would otherwise make the work grow with the square of the file. Real country and ASN
/// databases decode less than one value per byte (docs/geo.md).
const WORK_PER_BYTE: usize = 4;
/// The values any file may decode, however small.
const WORK_FLOOR: usize = 1 << 16;

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

/// A value of the data section, as far as we need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Pointer(usize),
    Str(usize, usize),
    Uint(u128),
    Map(usize),
    Array(usize),
    Other,
}

/// The data section (or the metadata), with offsets relative to its start, and the values it may
/// still decode.
struct Data<'a> {
    bytes: &'a [u8],
    work: Cell<usize>,
}

impl<'a> Data<'a> {
    fn new(bytes: &'a [u8]) -> Data<'a> {
        Data {
            bytes,
            work: Cell::new(
                bytes
                    .len()
                    .saturating_mul(WORK_PER_BYTE)
                    .saturating_add(WORK_FLOOR),
            ),
        }
    }

    fn byte(&self, at: usize) -> Result<u8, Refusal> {
        self.bytes
            .get(at)
            .copied()
            .ok_or_else(|| format!("data section truncated at offset {at}"))
    }

    fn slice(&self, at: usize, n: usize) -> Result<&'a [u8], Refusal> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
            .ok_or_else(|| format!("data section truncated at offset {at} (+{n} bytes)"))
    }

    fn be(&self, at: usize, n: usize) -> Result<u128, Refusal> {
        Ok(self
            .slice(at, n)?
            .iter()
            .fold(0u128, |v, &b| (v << 8) | u128::from(b)))
    }

    /// The value at `at` and the offset just after its control bytes (and, for scalars, after
    /// its payload: the offset of the next value, except for maps and arrays whose items follow).
    fn head(&self, at: usize) -> Result<(Kind, usize), Refusal> {
        let left = self.work.get().checked_sub(1).ok_or_else(|| {
            format!(
                "reading the records decodes more than {WORK_PER_BYTE} values per byte of the data section (records nested in one another)"
            )
        })?;
        self.work.set(left);
        let ctrl = self.byte(at)?;
        let mut at = at + 1;
        let mut kind = ctrl >> 5;
        if kind == 1 {
            let ss = (ctrl >> 3) & 3;
            let vvv = u128::from(ctrl & 7);
            let n = usize::from(ss) + 1;
            let raw = self.be(at, n)?;
            let target = match ss {
                0 => (vvv << 8) | raw,
                1 => ((vvv << 16) | raw) + 2048,
                2 => ((vvv << 24) | raw) + 526_336,
                _ => raw,
            };
            return Ok((Kind::Pointer(target as usize), at + n));
        }
        if kind == 0 {
            kind = 7u8.saturating_add(self.byte(at)?);
            at += 1;
        }
        let mut size = usize::from(ctrl & 0x1f);
        if size >= 29 {
            let n = size - 28;
            let extra = self.be(at, n)? as usize;
            at += n;
            size = match n {
                1 => 29 + extra,
                2 => 285 + extra,
                _ => 65_821 + extra,
            };
        }
        let scalar = |k: Kind, n: usize| -> Result<(Kind, usize), Refusal> {
            self.slice(at, n)?;
            Ok((k, at + n))
        };
        match kind {
            2 => scalar(Kind::Str(at, size), size),
            5 | 6 | 9 | 10 => {
                let max = match kind {
                    5 => 2,
                    6 => 4,
                    9 => 8,
                    _ => 16,
                };
                if size > max {
                    return Err(format!(
                        "an unsigned integer of {size} bytes at offset {at}"
                    ));
                }
                Ok((Kind::Uint(self.be(at, size)?), at + size))
            }
            7 => Ok((Kind::Map(size), at)),
            11 => Ok((Kind::Array(size), at)),
            3 | 4 | 8 | 15 => scalar(Kind::Other, size),
            14 => Ok((Kind::Other, at)),
            _ => Err(format!("unknown data type {kind} at offset {}", at - 1)),
        }
    }

    /// The value at `at` with pointers followed (a bounded number of hops).
    fn resolve(&self, mut at: usize) -> Result<(Kind, usize), Refusal> {
        for _ in 0..=MAX_POINTER_HOPS {
            match self.head(at)? {
                (Kind::Pointer(target), _) => at = target,
                found => return Ok(found),
            }
        }
        Err(format!(
            "more than {MAX_POINTER_HOPS} pointers in a row at offset {at}"
        ))
    }

    /// The offset after the value at `at` (maps and arrays skipped whole; pointers not followed).
    /// Iterative: a count of items still to skip, each consuming at least one byte.
    fn skip(&self, at: usize) -> Result<usize, Refusal> {
        let mut at = at;
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let (kind, next) = self.head(at)?;
            at = next;
            match kind {
                Kind::Map(n) => pending = pending.saturating_add(n.saturating_mul(2)),
                Kind::Array(n) => pending = pending.saturating_add(n),
                _ => {}
            }
        }
        Ok(at)
    }

    fn text(&self, kind: Kind) -> Option<&'a [u8]> {
        match kind {
            Kind::Str(at, n) => self.bytes.get(at..at + n),
            _ => None,
        }
    }

    /// The value at the end of `path` from the map at `at` (None: the record lacks it).
    fn lookup(&self, at: usize, path: &[String]) -> Result<Option<Kind>, Refusal> {
        let mut at = at;
        for (depth, segment) in path.iter().enumerate() {
            let (kind, mut item) = self.resolve(at)?;
            let Kind::Map(pairs) = kind else {
                return Ok(None);
            };
            let mut found = None;
            for _ in 0..pairs {
                let (key, _) = self.resolve(item)?;
                let after_key = self.skip(item)?;
                if self.text(key) == Some(segment.as_bytes()) {
                    found = Some(after_key);
                    break;
                }
                item = self.skip(after_key)?;
            }
            let Some(value) = found else {
                return Ok(None);
            };
            if depth + 1 == path.len() {
                return self.resolve(value).map(|(k, _)| Some(k));
            }
            at = value;
        }
        Ok(None)
    }
}

/// The database's shape from its metadata.
struct Metadata {
    node_count: usize,
    record_size: usize,
    ip_version: u128,
}

fn metadata(file: &[u8]) -> Result<(Metadata, usize), Refusal> {
    let window = file.len().saturating_sub(METADATA_WINDOW);
    let tail = &file[window..];
    let start = tail
        .windows(METADATA_MARKER.len())
        .rposition(|w| w == METADATA_MARKER)
        .ok_or("no MaxMind DB metadata marker (not an .mmdb file)")?;
    let meta_at = window + start + METADATA_MARKER.len();
    let meta = Data::new(&file[meta_at..]);
    let uint = |key: &str| -> Result<u128, Refusal> {
        match meta.lookup(0, &[key.to_string()])? {
            Some(Kind::Uint(v)) => Ok(v),
            _ => Err(format!("metadata has no unsigned {key}")),
        }
    };
    let node_count = uint("node_count")?;
    let record_size = uint("record_size")?;
    let ip_version = uint("ip_version")?;
    if !matches!(record_size, 24 | 28 | 32) {
        return Err(format!("record_size {record_size} (not 24, 28 or 32)"));
    }
    if !matches!(ip_version, 4 | 6) {
        return Err(format!("ip_version {ip_version} (not 4 or 6)"));
    }
    let node_count = usize::try_from(node_count)
        .ok()
        .filter(|&n| n > 0 && (n as u64) < (1u64 << 32))
        .ok_or_else(|| format!("node_count {node_count} out of range"))?;
    Ok((
        Metadata {
            node_count,
            record_size: record_size as usize,
            ip_version,
        },
        window + start,
    ))
}

/// Where a walk goes from a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Record {
    Node(usize),
    Empty,
    Data(usize),
}

struct Tree<'a> {
    bytes: &'a [u8],
    node_count: usize,
    record_size: usize,
}

impl Tree<'_> {
    fn records(&self, node: usize) -> (u32, u32) {
        let b = |i: usize| u32::from(self.bytes[i]);
        match self.record_size {
            24 => {
                let o = node * 6;
                (
                    (b(o) << 16) | (b(o + 1) << 8) | b(o + 2),
                    (b(o + 3) << 16) | (b(o + 4) << 8) | b(o + 5),
                )
            }
            28 => {
                let o = node * 7;
                let mid = b(o + 3);
                (
                    ((mid & 0xf0) << 20) | (b(o) << 16) | (b(o + 1) << 8) | b(o + 2),
                    ((mid & 0x0f) << 24) | (b(o + 4) << 16) | (b(o + 5) << 8) | b(o + 6),
                )
            }
            _ => {
                let o = node * 8;
                (
                    (b(o) << 24) | (b(o + 1) << 16) | (b(o + 2) << 8) | b(o + 3),
                    (b(o + 4) << 24) | (b(o + 5) << 16) | (b(o + 6) << 8) | b(o + 7),
                )
            }
        }
    }

    fn record(&self, value: u32, data_len: usize) -> Result<Record, Refusal> {
        let value = value as usize;
        if value < self.node_count {
            return Ok(Record::Node(value));
        }
        if value == self.node_count {
            return Ok(Record::Empty);
        }
        match value.checked_sub(self.node_count + 16) {
            Some(offset) if offset < data_len => Ok(Record::Data(offset)),
            _ => Err(format!(
                "a search tree record points outside the data section ({value})"
            )),
        }
    }
}

/// Reads a database into its table: at most `max_entries` ranges, `fields` read from each record.
pub fn read(file: &[u8], fields: &Fields, max_entries: usize) -> Result<GeoTable, Refusal> {
    let (meta, marker_at) = metadata(file)?;
    let node_bytes = meta.record_size / 4;
    let tree_len = meta
        .node_count
        .checked_mul(node_bytes)
        .filter(|&n| n.checked_add(16).is_some_and(|end| end <= marker_at))
        .ok_or_else(|| {
            format!(
                "the search tree ({} nodes of {} bytes) is larger than the file",
                meta.node_count, node_bytes
            )
        })?;
    let data = Data::new(&file[tree_len + 16..marker_at]);
    let tree = Tree {
        bytes: &file[..tree_len],
        node_count: meta.node_count,
        record_size: meta.record_size,
    };
    let mut walk = Walk {
        tree: &tree,
        data: &data,
        fields,
        values: HashMap::new(),
        visits: 0,
        max_visits: meta.node_count.saturating_mul(4).saturating_add(1024),
        max_entries,
        country_seen: false,
        asn_seen: false,
        v4_node: None,
    };
    let mut table = GeoTable::default();
    if meta.ip_version == 4 {
        walk.run(
            Record::Node(0),
            32,
            &mut |s, e, g| table.push_v4(s, e, g),
            &mut |_| {},
        )?;
    } else {
        // The IPv4 subtree is ::/96; IPv6 trees usually alias it (::ffff:0:0/96, 2002::/16).
        let mut v4_root = Record::Node(0);
        for _ in 0..96 {
            if let Record::Node(n) = v4_root {
                v4_root = tree.record(tree.records(n).0, data.bytes.len())?;
            }
        }
        let v4_node = match v4_root {
            Record::Node(n) => Some(n),
            _ => None,
        };
        walk.v4_node = v4_node;
        walk.run(
            v4_root,
            32,
            &mut |s, e, g| table.push_v4(s, e, g),
            &mut |_| {},
        )?;
        let mut aliases = Vec::new();
        walk.run(
            Record::Node(0),
            128,
            &mut |s, e, g| table.push_v6(s, e, g),
            &mut |alias| aliases.push(alias),
        )?;
        table.set_aliases(aliases);
    }
    if fields.country.is_some() && !walk.country_seen || fields.asn.is_some() && !walk.asn_seen {
        let missing = if fields.country.is_some() && !walk.country_seen {
            "country_field"
        } else {
            "asn_field"
        };
        return Err(format!("no record of the database has the {missing}"));
    }
    if table.is_empty() {
        return Err("the database holds no address with the named fields".into());
    }
    Ok(table)
}

/// A walk over the search tree, depth first with an explicit stack.
struct Walk<'a> {
    tree: &'a Tree<'a>,
    data: &'a Data<'a>,
    fields: &'a Fields,
    values: HashMap<usize, Geo>,
    visits: usize,
    max_visits: usize,
    max_entries: usize,
    country_seen: bool,
    asn_seen: bool,
    /// The IPv4 subtree's root node in an IPv6 tree.
    v4_node: Option<usize>,
}

impl Walk<'_> {
    fn geo(&mut self, offset: usize) -> Result<Geo, Refusal> {
        if let Some(g) = self.values.get(&offset) {
            return Ok(*g);
        }
        let mut geo = Geo::default();
        if let Some(path) = &self.fields.country {
            let text = self
                .data
                .lookup(offset, path)?
                .and_then(|k| self.data.text(k));
            if let Some(&[a, b]) = text {
                if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
                    geo.country = Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]);
                    self.country_seen = true;
                }
            }
        }
        if let Some(path) = &self.fields.asn {
            if let Some(Kind::Uint(n)) = self.data.lookup(offset, path)? {
                if let Some(n) = u32::try_from(n).ok().filter(|&n| n > 0) {
                    geo.asn = Some(n);
                    self.asn_seen = true;
                }
            }
        }
        self.values.insert(offset, geo);
        Ok(geo)
    }

    /// Walks from `start` over `bits` address bits, emitting `(first, last, geo)` ranges in order
    /// (addresses right-aligned in a u128). A record reaching the IPv4 subtree of an IPv6 tree is
    /// not walked again: `alias` gets its prefix and length.
    fn run(
        &mut self,
        start: Record,
        bits: u32,
        emit: &mut dyn FnMut(u128, u128, Geo) -> Result<(), Refusal>,
        alias: &mut dyn FnMut((u128, u8)),
    ) -> Result<(), Refusal> {
        let mut stack: Vec<(Record, u32, u128)> = vec![(start, 0, 0)];
        let mut ranges = 0usize;
        let data_len = self.data.bytes.len();
        while let Some((record, depth, prefix)) = stack.pop() {
            match record {
                Record::Empty => {}
                Record::Data(offset) => {
                    let geo = self.geo(offset)?;
                    if geo.country.is_some() || geo.asn.is_some() {
                        let span = bits - depth;
                        let first = if span >= 128 { 0 } else { prefix << span };
                        let last = if span >= 128 {
                            u128::MAX
                        } else {
                            first | ((1u128 << span) - 1)
                        };
                        ranges += 1;
                        if ranges > self.max_entries {
                            return Err(format!(
                                "more than max_entries ({}) ranges",
                                self.max_entries
                            ));
                        }
                        emit(first, last, geo)?;
                    }
                }
                Record::Node(n) => {
                    if bits == 128 && depth > 0 && Some(n) == self.v4_node && depth <= 96 {
                        alias((prefix, depth as u8));
                        continue;
                    }
                    self.visits += 1;
                    if self.visits > self.max_visits {
                        return Err("the search tree revisits nodes too often (a cycle)".into());
                    }
                    if depth >= bits {
                        return Err(format!("the search tree is deeper than {bits} bits"));
                    }
                    let (left, right) = self.tree.records(n);
                    let (left, right) = (
                        self.tree.record(left, data_len)?,
                        self.tree.record(right, data_len)?,
                    );
                    stack.push((right, depth + 1, (prefix << 1) | 1));
                    stack.push((left, depth + 1, prefix << 1));
                }
            }
        }
        Ok(())
    }
}
