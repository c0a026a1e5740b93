//! `IpSet`: a compiled set of IP networks. Networks are turned into address ranges, sorted and
//! merged once at configuration time into a flat array of ranges with a bucket index over their
//! starts (see `Ranges`): a lookup is a subtraction, a shift and a search of one small bucket,
//! so its cost hardly grows with the list (at worst with log2 of it), never with its length.
//! IPv4 and IPv6 live in separate tables: `::/0` holds no IPv4 address. Mapped networks
//! (`::ffff:10.0.0.0/104`) are stored as the IPv4 networks they denote (`10.0.0.0/8`).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net};

use crate::addr::{canonical, parse_ip};

/// Sorted, disjoint, non-adjacent inclusive ranges `(start, end)`, with a bucket index over the
/// starts.
///
/// The index cuts `[base, last start]` (`base` being the first start) into at most 2^k equal
/// buckets, 2^k being the largest power of two not above the number of ranges: bucket `b` holds
/// the ranges whose start `s` has `(s - base) >> shift == b`, and they are
/// `ranges[index[b]..index[b + 1]]`. A lookup computes its bucket with a subtraction and a shift,
/// then binary-searches that bucket only (one or two ranges on spread lists), instead of the
/// ~log2(n) dependent, cache-missing steps of a binary search over the whole table. Clustered
/// lists put many ranges in one bucket, which is still searched in log2 of its size: never worse
/// than a plain binary search. Small tables (below [`INDEX_MIN`]) skip the index.
#[derive(Clone, Debug, Default)]
struct Ranges<T> {
    ranges: Vec<(T, T)>,
    /// `index[b]`: the first range whose start is in bucket `b` or after; empty without index.
    index: Vec<u32>,
    base: T,
    shift: u32,
}

/// Tables with fewer ranges are searched directly: a few compares in one or two cache lines.
const INDEX_MIN: usize = 64;

impl<T: Key> Ranges<T> {
    fn build(pairs: Vec<(T, T)>) -> Self {
        Self::from_merged(merge(pairs))
    }

    /// Ranges already sorted, disjoint and non-adjacent (see [`is_merged`]): only indexed.
    fn from_merged(pairs: Vec<(T, T)>) -> Self {
        let (index, base, shift) = build_index(&pairs);
        Ranges {
            ranges: pairs,
            index,
            base,
            shift,
        }
    }

    #[inline]
    fn contains(&self, x: T) -> bool {
        let ranges = self.ranges.as_slice();
        // The number of ranges starting at or before x; the last of them is the only candidate.
        let (lo, hi) = window(&self.index, self.base, self.shift, x, ranges.len());
        let i = lo + ranges[lo..hi].partition_point(|&(s, _)| s <= x);
        i > 0 && ranges[i - 1].1 >= x
    }

    fn len(&self) -> usize {
        self.ranges.len()
    }
}

/// Sorts ranges and merges the overlapping or touching ones: sorted, disjoint, non-adjacent.
fn merge<T: Key>(mut pairs: Vec<(T, T)>) -> Vec<(T, T)> {
    sort_by_start(&mut pairs, usize::BITS * 2);
    // Merge overlapping or touching ranges, in place.
    let mut kept = 0;
    for read in 0..pairs.len() {
        let (start, end) = pairs[read];
        if kept > 0 {
            let last = &mut pairs[kept - 1].1;
            if *last == T::MAX || start <= last.plus_one() {
                if end > *last {
                    *last = end;
                }
                continue;
            }
        }
        pairs[kept] = (start, end);
        kept += 1;
    }
    pairs.truncate(kept);
    pairs.shrink_to_fit();
    pairs
}

/// The bucket index over the sorted starts of `pairs`: positions, base and shift; no index for
/// small tables (see [`Ranges`]).
fn build_index<T: Key>(pairs: &[(T, T)]) -> (Vec<u32>, T, u32) {
    let n = pairs.len();
    // u32 positions: the index is only built for tables that fit them (any real list does).
    if n < INDEX_MIN || u32::try_from(n).is_err() {
        return (Vec::new(), T::ZERO, 0);
    }
    let base = pairs[0].0;
    let span = pairs[n - 1].0.minus(base);
    let k = usize::BITS - 1 - n.leading_zeros(); // 2^k <= n
    let shift = span.bit_len().saturating_sub(k);
    let buckets = span.shr(shift).low_usize() + 1;
    // Plain loops over a zeroed vector: this runs on every worker for each new list from a
    // source, and the .wasm's size-optimised build does not inline a closure, a push or a range
    // iterator here (it was half of adopting a 1M-entry list).
    let mut index = vec![0u32; buckets + 1];
    let (mut i, mut b) = (0usize, 0usize);
    while b <= buckets {
        while i < n && pairs[i].0.minus(base).shr(shift).low_usize() < b {
            i += 1;
        }
        index[b] = i as u32;
        b += 1;
    }
    (index, base, shift)
}

/// The window `[lo, hi)` of a table of `n` sorted starts in which the number of starts at or
/// before `x` lies: ranges left of it start before `x`, ranges right of it after `x`.
#[inline]
fn window<T: Key>(index: &[u32], base: T, shift: u32, x: T, n: usize) -> (usize, usize) {
    if index.len() < 2 {
        return (0, n);
    }
    if x < base {
        return (0, 0);
    }
    let bucket = x.minus(base).shr(shift);
    // Past the last bucket: every range starts before x.
    let last_bucket = index.len() - 2;
    if bucket > T::from_usize(last_bucket) {
        return (n, n);
    }
    let b = bucket.low_usize();
    (index[b] as usize, index[b + 1] as usize)
}

/// The IPv6 table: the ranges of a `Ranges<u128>` split into their high and low 64 bits, in two
/// arrays, with the bucket index over the high halves of the starts. A lookup searches the
/// compact high halves (16 bytes a range, half of the full ranges) and reads the low halves only
/// when the high halves cannot decide: when the address shares its high 64 bits with the
/// candidate's start or end and that range does not cover whole /64s (`whole`, a bit per range:
/// start low half 0 and end low half all ones). Lists are mostly /64 or shorter prefixes, whose
/// lookups then never touch the low halves; a random lookup in a large table costs about one
/// cache miss instead of two.
#[derive(Clone, Debug, Default)]
struct Ranges6 {
    /// (start, end) high 64 bits.
    hi: Vec<(u64, u64)>,
    /// (start, end) low 64 bits.
    lo: Vec<(u64, u64)>,
    /// Bit i: range i covers whole /64s.
    whole: Vec<u64>,
    index: Vec<u32>,
    base: u64,
    shift: u32,
}

impl Ranges6 {
    fn build(pairs: Vec<(u128, u128)>) -> Self {
        Self::from_merged(merge(pairs))
    }

    /// Ranges already sorted, disjoint and non-adjacent (see [`is_merged`]): split and indexed.
    fn from_merged(merged: Vec<(u128, u128)>) -> Self {
        let n = merged.len();
        let hi: Vec<(u64, u64)> = merged
            .iter()
            .map(|&(s, e)| ((s >> 64) as u64, (e >> 64) as u64))
            .collect();
        let lo: Vec<(u64, u64)> = merged.iter().map(|&(s, e)| (s as u64, e as u64)).collect();
        drop(merged);
        let mut whole = vec![0u64; n.div_ceil(64)];
        for (i, &(s, e)) in lo.iter().enumerate() {
            if s == 0 && e == u64::MAX {
                whole[i / 64] |= 1 << (i % 64);
            }
        }
        let (index, base, shift) = build_index(&hi);
        Ranges6 {
            hi,
            lo,
            whole,
            index,
            base,
            shift,
        }
    }

    #[inline]
    fn is_whole(&self, i: usize) -> bool {
        self.whole
            .get(i / 64)
            .is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    #[inline]
    fn contains(&self, x: u128) -> bool {
        let (xh, xl) = ((x >> 64) as u64, x as u64);
        let n = self.hi.len();
        let (mut a, mut b) = window(&self.index, self.base, self.shift, xh, n);
        // Binary search for the number of ranges whose start is at or before x.
        while a < b {
            let mid = a + (b - a) / 2;
            let start_hi = self.hi[mid].0;
            let at_or_before =
                start_hi < xh || (start_hi == xh && (self.is_whole(mid) || self.lo[mid].0 <= xl));
            if at_or_before {
                a = mid + 1;
            } else {
                b = mid;
            }
        }
        if a == 0 {
            return false;
        }
        let c = a - 1;
        let end_hi = self.hi[c].1;
        end_hi > xh || (end_hi == xh && (self.is_whole(c) || self.lo[c].1 >= xl))
    }

    fn len(&self) -> usize {
        self.hi.len()
    }

    /// The full ranges, joined again from their halves.
    fn pairs(&self) -> Vec<(u128, u128)> {
        self.hi
            .iter()
            .zip(&self.lo)
            .map(|(&(sh, eh), &(sl, el))| {
                (
                    (u128::from(sh) << 64) | u128::from(sl),
                    (u128::from(eh) << 64) | u128::from(el),
                )
            })
            .collect()
    }
}

/// Whether ranges are sorted, each well formed, disjoint and non-adjacent: the form a built
/// table holds, and the only one [`IpSet::from_merged`] accepts.
fn is_merged<T: Key>(pairs: &[(T, T)]) -> bool {
    pairs.iter().all(|&(s, e)| s <= e)
        && pairs
            .windows(2)
            .all(|w| w[0].1 != T::MAX && w[1].0 > w[0].1.plus_one())
}

/// Two merged range lists as one merged list, in one pass (no sort).
fn union_merged<T: Key>(a: &[(T, T)], b: &[(T, T)]) -> Vec<(T, T)> {
    let mut out: Vec<(T, T)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = if j >= b.len() || (i < a.len() && a[i].0 <= b[j].0) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        match out.last_mut() {
            Some(last) if last.1 == T::MAX || next.0 <= last.1.plus_one() => {
                if next.1 > last.1 {
                    last.1 = next.1;
                }
            }
            _ => out.push(next),
        }
    }
    out
}

/// Sorts ranges by their start (the merge does not care about the order of equal starts): an
/// introsort (quicksort with a median-of-three pivot, insertion sort for short runs, heapsort
/// once `depth` runs out). A few hundred bytes of `.wasm` per key type, where the standard
/// library's sort costs about 6 KB each; as fast on address lists.
fn sort_by_start<T: Key>(mut v: &mut [(T, T)], mut depth: u32) {
    loop {
        let n = v.len();
        if n <= 16 {
            for i in 1..n {
                let mut j = i;
                while j > 0 && v[j].0 < v[j - 1].0 {
                    v.swap(j, j - 1);
                    j -= 1;
                }
            }
            return;
        }
        if depth == 0 {
            heapsort_by_start(v);
            return;
        }
        depth -= 1;
        // Median of the first, middle and last starts, moved to v[0] as the pivot.
        let mid = n / 2;
        if v[mid].0 < v[0].0 {
            v.swap(mid, 0);
        }
        if v[n - 1].0 < v[0].0 {
            v.swap(n - 1, 0);
        }
        if v[n - 1].0 < v[mid].0 {
            v.swap(n - 1, mid);
        }
        v.swap(0, mid);
        let pivot = v[0].0;
        // Hoare partition: [1, i) <= pivot, (j, n) >= pivot; equal starts stop both scans.
        let (mut i, mut j) = (1, n - 1);
        loop {
            while i <= j && v[i].0 < pivot {
                i += 1;
            }
            while v[j].0 > pivot {
                j -= 1;
            }
            if i >= j {
                break;
            }
            v.swap(i, j);
            i += 1;
            j -= 1;
        }
        v.swap(0, j);
        // Recurse into the shorter side, loop on the longer one.
        let (left, right) = std::mem::take(&mut v).split_at_mut(j);
        let right = &mut right[1..];
        if left.len() < right.len() {
            sort_by_start(left, depth);
            v = right;
        } else {
            sort_by_start(right, depth);
            v = left;
        }
    }
}

fn heapsort_by_start<T: Key>(v: &mut [(T, T)]) {
    let sift_down = |v: &mut [(T, T)], mut root: usize, end: usize| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            return;
        }
        if child + 1 < end && v[child].0 < v[child + 1].0 {
            child += 1;
        }
        if v[root].0 >= v[child].0 {
            return;
        }
        v.swap(root, child);
        root = child;
    };
    let n = v.len();
    for root in (0..n / 2).rev() {
        sift_down(v, root, n);
    }
    for end in (1..n).rev() {
        v.swap(0, end);
        sift_down(v, 0, end);
    }
}

/// The unsigned integers addresses are kept as (u32 for IPv4, u128 for IPv6).
trait Key: Copy + Ord {
    const ZERO: Self;
    const MAX: Self;
    /// Saturating successor, for merging touching ranges.
    fn plus_one(self) -> Self;
    /// `self - other`, for `self >= other`.
    fn minus(self, other: Self) -> Self;
    fn shr(self, bits: u32) -> Self;
    /// Number of significant bits.
    fn bit_len(self) -> u32;
    /// The low bits as a usize (callers only use it on values that fit).
    fn low_usize(self) -> usize;
    fn from_usize(n: usize) -> Self;
}

/// The same `Key` for each unsigned width the tables use.
macro_rules! impl_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const ZERO: $t = 0;
            const MAX: $t = <$t>::MAX;
            #[inline(always)]
            fn plus_one(self) -> $t {
                self.saturating_add(1)
            }
            #[inline(always)]
            fn minus(self, other: $t) -> $t {
                self - other
            }
            #[inline(always)]
            fn shr(self, bits: u32) -> $t {
                self.checked_shr(bits).unwrap_or(0)
            }
            #[inline(always)]
            fn bit_len(self) -> u32 {
                <$t>::BITS - self.leading_zeros()
            }
            #[inline(always)]
            fn low_usize(self) -> usize {
                self as usize
            }
            #[inline(always)]
            fn from_usize(n: usize) -> $t {
                n as $t
            }
        }
    )*};
}

impl_key!(u32, u64, u128);

/// A compiled, immutable set of IPv4 and IPv6 networks. Cloning it shares the tables (a list
/// from a source is held once per VM, by the source and by every policy naming it).
#[derive(Clone, Debug, Default)]
pub struct IpSet {
    tables: Arc<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    v4: Ranges<u32>,
    v6: Ranges6,
}

impl IpSet {
    fn new(v4: Ranges<u32>, v6: Ranges6) -> IpSet {
        IpSet {
            tables: Arc::new(Tables { v4, v6 }),
        }
    }
}

impl IpSet {
    /// The empty set.
    pub fn empty() -> Self {
        IpSet::default()
    }

    /// Compiles networks into a set. Host bits are ignored (a network is its whole range);
    /// IPv4-mapped IPv6 networks become IPv4 networks.
    pub fn from_nets<I: IntoIterator<Item = IpNet>>(nets: I) -> Self {
        let mut builder = IpSetBuilder::default();
        for net in nets {
            builder.push(net);
        }
        builder.build()
    }

    /// Whether the address is inside one of the networks. Mapped IPv4 addresses are looked up
    /// as IPv4.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(v4) => self.tables.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => self.tables.v6.contains(u128::from(v6)),
        }
    }

    /// True when the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.tables.v4.ranges.is_empty() && self.tables.v6.hi.is_empty()
    }

    /// The IPv4 ranges, inclusive, sorted, disjoint and non-adjacent.
    pub fn ranges_v4(&self) -> &[(u32, u32)] {
        &self.tables.v4.ranges
    }

    /// The IPv6 ranges, inclusive, sorted, disjoint and non-adjacent.
    pub fn ranges_v6(&self) -> Vec<(u128, u128)> {
        self.tables.v6.pairs()
    }

    /// A set from ranges in the form [`IpSet::ranges_v4`] and [`IpSet::ranges_v6`] return them
    /// (sorted, disjoint, non-adjacent), indexed without sorting again; None when they are not in
    /// that form. IPv4-mapped IPv6 ranges are taken as they are (a published table holds none).
    pub fn from_merged(v4: Vec<(u32, u32)>, v6: Vec<(u128, u128)>) -> Option<IpSet> {
        if !is_merged(&v4) || !is_merged(&v6) {
            return None;
        }
        Some(IpSet::new(
            Ranges::from_merged(v4),
            Ranges6::from_merged(v6),
        ))
    }

    /// A set from inclusive ranges in any order (sorted and merged here).
    pub fn from_ranges(v4: Vec<(u32, u32)>, v6: Vec<(u128, u128)>) -> IpSet {
        IpSet::new(Ranges::build(v4), Ranges6::build(v6))
    }

    /// The addresses of both sets, in one linear pass over their ranges.
    pub fn union(&self, other: &IpSet) -> IpSet {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let (a, b) = (&self.tables, &other.tables);
        IpSet::new(
            Ranges::from_merged(union_merged(&a.v4.ranges, &b.v4.ranges)),
            Ranges6::from_merged(union_merged(&a.v6.pairs(), &b.v6.pairs())),
        )
    }

    /// Number of disjoint ranges after merging (IPv4, IPv6); for logs.
    pub fn range_counts(&self) -> (usize, usize) {
        (self.tables.v4.len(), self.tables.v6.len())
    }
}

/// Collects networks one at a time (e.g. while a configuration list is read) into the compact
/// range form, then compiles them into an [`IpSet`]: 8 bytes per IPv4 and 32 per IPv6 network,
/// no intermediate list of networks.
#[derive(Clone, Debug, Default)]
pub struct IpSetBuilder {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSetBuilder {
    /// Adds a network (host bits ignored; a mapped IPv6 network is its IPv4 network).
    pub fn push(&mut self, net: IpNet) {
        match canonical_net(net) {
            IpNet::V4(n) => self
                .v4
                .push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => self
                .v6
                .push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
    }

    /// Sorts, merges and indexes the networks.
    pub fn build(self) -> IpSet {
        IpSet::new(Ranges::build(self.v4), Ranges6::build(self.v6))
    }
}

/// Parses a configured network: a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a single address
/// (`198.51.100.7` is `/32`, an IPv6 address `/128`). Returns the network with host bits cleared
/// and whether the text had any set (`10.1.2.3/8`), or None when the text is neither.
pub fn parse_net(text: &str) -> Option<(IpNet, bool)> {
    // The address goes through the entry parser (exactly std's grammar), which refuses IPv4
    // octets with leading zeros (`010.0.0.0/8`); ipnet's own CIDR parser accepts them.
    let Some((addr, len)) = text.split_once('/') else {
        return parse_ip(text).map(|ip| (IpNet::from(ip), false));
    };
    let ip = parse_ip(addr)?;
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
mod tests;
