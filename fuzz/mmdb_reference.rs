//! The `mmdb` target's oracle: one address at a time looked up in a MaxMind DB file the way the
//! format's description (MaxMind DB File Format Specification 2.0) reads it: the metadata map after
//! the last marker, then one search tree record per address bit, then the record's value in the
//! data section, with the field path followed map by map. Written with the standard library
//! only, none of the filter's reader (`source::mmdb`): no range table, no walk of the whole
//! tree, no cache. Recursion is fine here: inputs are at most a few KiB.
//!
//! What the filter takes from a value is the contract's (docs/geo.md): a country is a string of
//! two ASCII letters (upper-cased), an AS number an unsigned integer in 1..=4294967295; anything
//! else is no value. The first key of a map that matches is taken.

use std::net::IpAddr;

const MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";

/// Why the oracle cannot say (the file breaks the format where the address leads).
pub type Bad = &'static str;

/// A decoded control byte: type, size, and where the payload starts.
#[derive(Clone, Copy, Debug)]
struct Ctrl {
    ty: u8,
    size: usize,
    payload: usize,
}

/// A data section (or the metadata map's bytes).
pub struct Section<'a>(&'a [u8]);

impl Section<'_> {
    fn get(&self, at: usize) -> Result<u8, Bad> {
        self.0.get(at).copied().ok_or("past the end")
    }

    fn number(&self, at: usize, n: usize) -> Result<u128, Bad> {
        let mut v = 0u128;
        for i in 0..n {
            v = v << 8 | u128::from(self.get(at + i)?);
        }
        Ok(v)
    }

    fn ctrl(&self, at: usize) -> Result<Ctrl, Bad> {
        let first = self.get(at)?;
        let mut next = at + 1;
        let mut ty = first >> 5;
        if ty == 1 {
            // Pointer: SS = bits 3-4, VVV = bits 0-2.
            let ss = usize::from((first >> 3) & 0b11);
            let vvv = u128::from(first & 0b111);
            let raw = self.number(next, ss + 1)?;
            let target = match ss {
                0 => vvv * 256 + raw,
                1 => vvv * 65536 + raw + 2048,
                2 => vvv * 16_777_216 + raw + 526_336,
                _ => raw,
            };
            return Ok(Ctrl {
                ty: 1,
                size: usize::try_from(target).map_err(|_| "pointer")?,
                payload: next + ss + 1,
            });
        }
        if ty == 0 {
            ty = self.get(next)?.checked_add(7).ok_or("extended type")?;
            next += 1;
        }
        let mut size = usize::from(first & 0b1_1111);
        match size {
            29 => {
                size = 29 + self.number(next, 1)? as usize;
                next += 1;
            }
            30 => {
                size = 285 + self.number(next, 2)? as usize;
                next += 2;
            }
            31 => {
                size = 65_821 + self.number(next, 3)? as usize;
                next += 3;
            }
            _ => {}
        }
        Ok(Ctrl {
            ty,
            size,
            payload: next,
        })
    }

    /// The control of the value at `at`, pointers followed (at most 16 in a row).
    fn deref(&self, mut at: usize) -> Result<Ctrl, Bad> {
        for _ in 0..16 {
            let c = self.ctrl(at)?;
            if c.ty != 1 {
                return Ok(c);
            }
            at = c.size;
        }
        Err("pointer loop")
    }

    /// The offset after the value at `at` (a pointer is one value: not followed).
    fn after(&self, at: usize, depth: u32) -> Result<usize, Bad> {
        if depth > 512 {
            return Err("nested too deep");
        }
        let c = self.ctrl(at)?;
        match c.ty {
            1 | 14 => Ok(c.payload),
            2 | 3 | 4 | 8 | 15 | 5 | 6 | 9 | 10 => {
                let end = c.payload.checked_add(c.size).ok_or("size")?;
                if end > self.0.len() {
                    return Err("value past the end");
                }
                Ok(end)
            }
            7 | 11 => {
                let items = if c.ty == 7 {
                    c.size.checked_mul(2).ok_or("size")?
                } else {
                    c.size
                };
                let mut next = c.payload;
                for _ in 0..items {
                    next = self.after(next, depth + 1)?;
                }
                Ok(next)
            }
            _ => Err("data type"),
        }
    }

    /// The value at the end of `path`, from the value at `at`: None when a step is not a map or
    /// lacks the key.
    fn find(&self, at: usize, path: &[&str]) -> Result<Option<Ctrl>, Bad> {
        let c = self.deref(at)?;
        let Some((first, rest)) = path.split_first() else {
            return Ok(Some(c));
        };
        if c.ty != 7 {
            return Ok(None);
        }
        let mut item = c.payload;
        for _ in 0..c.size {
            let key = self.deref(item)?;
            let value = self.after(item, 0)?;
            if key.ty == 2
                && self.0.get(key.payload..key.payload + key.size) == Some(first.as_bytes())
            {
                return self.find(value, rest);
            }
            item = self.after(value, 0)?;
        }
        Ok(None)
    }

    fn uint(&self, c: Ctrl) -> Option<u128> {
        let widest = match c.ty {
            5 => 2,
            6 => 4,
            9 => 8,
            10 => 16,
            _ => return None,
        };
        if c.size > widest {
            return None;
        }
        self.number(c.payload, c.size).ok()
    }
}

/// A database as its metadata describes it.
pub struct Db<'a> {
    node_count: u64,
    record_size: u32,
    ipv6: bool,
    tree: &'a [u8],
    data: Section<'a>,
}

impl<'a> Db<'a> {
    /// The database in `file`, or why the format's description does not make it one.
    pub fn open(file: &'a [u8]) -> Result<Db<'a>, Bad> {
        let from = file.len().saturating_sub(128 * 1024);
        let marker = (from..=file.len().saturating_sub(MARKER.len()))
            .rev()
            .find(|&i| file[i..].starts_with(MARKER))
            .ok_or("no marker")?;
        let meta = Section(&file[marker + MARKER.len()..]);
        let key = |name: &str| -> Result<u128, Bad> {
            let c = meta.find(0, &[name])?.ok_or("metadata key missing")?;
            meta.uint(c).ok_or("metadata key not unsigned")
        };
        let node_count = u64::try_from(key("node_count")?).map_err(|_| "node_count")?;
        let record_size = u32::try_from(key("record_size")?).map_err(|_| "record_size")?;
        let ipv6 = match key("ip_version")? {
            4 => false,
            6 => true,
            _ => return Err("ip_version"),
        };
        if ![24, 28, 32].contains(&record_size) {
            return Err("record_size");
        }
        let tree_len = node_count
            .checked_mul(u64::from(record_size) / 4)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("node_count")?;
        let data_at = tree_len.checked_add(16).ok_or("node_count")?;
        if data_at > marker {
            return Err("tree past the data section");
        }
        Ok(Db {
            node_count,
            record_size,
            ipv6,
            tree: &file[..tree_len],
            data: Section(&file[data_at..marker]),
        })
    }

    /// Record `side` (0 left, 1 right) of node `n`.
    fn record(&self, n: u64, side: usize) -> u64 {
        let bytes = u64::from(self.record_size) / 4;
        let at = (n * bytes) as usize;
        let b = |i: usize| u64::from(self.tree[at + i]);
        match (self.record_size, side) {
            (24, 0) => b(0) << 16 | b(1) << 8 | b(2),
            (24, _) => b(3) << 16 | b(4) << 8 | b(5),
            // The middle byte's high nibble is the left record's top bits, its low nibble the right's.
            (28, 0) => (b(3) >> 4) << 24 | b(0) << 16 | b(1) << 8 | b(2),
            (28, _) => (b(3) & 0x0f) << 24 | b(4) << 16 | b(5) << 8 | b(6),
            (_, 0) => b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3),
            (_, _) => b(4) << 24 | b(5) << 16 | b(6) << 8 | b(7),
        }
    }

    /// The data offset of `ip`'s record (None: the database holds no record for it). An IPv4
    /// address in an IPv6 tree is `::a.b.c.d`; an IPv4-mapped IPv6 address is its IPv4 address
    /// (the filter's rule, docs/geo.md).
    pub fn offset_of(&self, ip: IpAddr) -> Result<Option<usize>, Bad> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let (bits, n): (u128, u32) = match ip {
            IpAddr::V4(v4) if self.ipv6 => (u128::from(u32::from(v4)), 128),
            IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
            IpAddr::V6(_) if !self.ipv6 => return Ok(None),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let mut node = 0u64;
        for i in (0..n).rev() {
            if node >= self.node_count {
                break;
            }
            node = self.record(node, ((bits >> i) & 1) as usize);
        }
        if node < self.node_count {
            return Err("the address ends on a node");
        }
        if node == self.node_count {
            return Ok(None);
        }
        let offset = (node - self.node_count - 16) as usize;
        if offset >= self.data.0.len() {
            return Err("record past the data section");
        }
        Ok(Some(offset))
    }

    /// The country (upper case) and AS number the database gives `ip`, reading these paths.
    pub fn lookup(
        &self,
        ip: IpAddr,
        country: Option<&[&str]>,
        asn: Option<&[&str]>,
    ) -> Result<(Option<[u8; 2]>, Option<u32>), Bad> {
        let Some(offset) = self.offset_of(ip)? else {
            return Ok((None, None));
        };
        let mut out = (None, None);
        if let Some(path) = country {
            if let Some(c) = self.data.find(offset, path)? {
                if c.ty == 2 && c.size == 2 {
                    let (a, b) = (self.data.get(c.payload)?, self.data.get(c.payload + 1)?);
                    if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() {
                        out.0 = Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]);
                    }
                }
            }
        }
        if let Some(path) = asn {
            if let Some(c) = self.data.find(offset, path)? {
                out.1 = self
                    .data
                    .uint(c)
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|&n| n > 0);
            }
        }
        Ok(out)
    }

    /// The first and last address of up to `max` leaves of the tree (IPv4 addresses as
    /// `::a.b.c.d` in an IPv6 tree), depth first, visiting at most `max * 64` nodes.
    pub fn leaves(&self, max: usize) -> Vec<(u128, u128)> {
        let width = if self.ipv6 { 128 } else { 32 };
        let mut out = Vec::new();
        let mut stack = vec![(0u64, 0u32, 0u128)];
        let mut visits = 0;
        while let Some((node, depth, prefix)) = stack.pop() {
            visits += 1;
            if out.len() >= max || visits > max * 64 {
                break;
            }
            if node >= self.node_count || depth >= width {
                let span = width - depth;
                let first = if span >= 128 { 0 } else { prefix << span };
                let last = if span >= 128 {
                    u128::MAX
                } else {
                    first | ((1u128 << span) - 1)
                };
                out.push((first, last));
                continue;
            }
            for side in [1, 0] {
                stack.push((
                    self.record(node, side),
                    depth + 1,
                    prefix << 1 | side as u128,
                ));
            }
        }
        out
    }

    /// An IPv6 tree.
    pub fn ipv6(&self) -> bool {
        self.ipv6
    }
}
