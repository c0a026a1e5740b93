//! The integrity of what the VMs of one configuration share (the table, its status, the lease and
//! the idle announcement): every value carries a tag that only a holder of this configuration can
//! compute, so another module on the same proxy (in Istio every WasmPlugin shares one shared-data
//! namespace) cannot forge, swap or freeze it.
//!
//! The key is 128 bits derived from the configuration's bytes (two SipHash-2-4 outputs under two
//! fixed keys of this project): other modules do not have our configuration. The tag is
//! SipHash-2-4 (64-bit) of the value's shared-data key and the value, so a value written under
//! one key (a status, another source's table) does not open under another. A value that does not
//! open is treated as absent and reported as forged; it never changes a decision.
//!
//! SipHash is a keyed pseudo-random function built for short inputs and fast in plain 64-bit
//! arithmetic, which is what WebAssembly has; a 16 MiB table (1M IPv6 ranges) is tagged in a few
//! tens of milliseconds of wasm, once per new list and worker.

use std::hash::Hasher;

use siphasher::sip::SipHasher24;

/// The tag's length.
pub const TAG_LEN: usize = 8;

/// Two fixed keys, only to make the derivation specific to this use.
const DERIVE_KEYS: [[u8; 16]; 2] = [*b"client-ip-filtr1", *b"client-ip-filtr2"];

/// The key of one configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

impl SealKey {
    /// The key of the configuration whose bytes are `config`.
    pub fn from_config(config: &[u8]) -> SealKey {
        let half = |key: &[u8; 16]| {
            let mut h = SipHasher24::new_with_key(key);
            h.write(config);
            h.finish()
        };
        SealKey {
            k0: half(&DERIVE_KEYS[0]),
            k1: half(&DERIVE_KEYS[1]),
        }
    }

    fn tag(&self, key: &str, value: &[u8]) -> [u8; TAG_LEN] {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write(&(key.len() as u64).to_le_bytes());
        h.write(key.as_bytes());
        h.write(value);
        h.finish().to_le_bytes()
    }

    /// `value` with its tag appended, to be written under `key`.
    pub fn seal(&self, key: &str, mut value: Vec<u8>) -> Vec<u8> {
        let tag = self.tag(key, &value);
        value.extend_from_slice(&tag);
        value
    }

    /// The value of a sealed one read under `key`, or None when its tag does not match.
    pub fn open<'a>(&self, key: &str, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let at = sealed.len().checked_sub(TAG_LEN)?;
        let (value, tag) = sealed.split_at(at);
        // Not constant-time: a module on the same proxy cannot time our reads.
        (self.tag(key, value) == tag).then_some(value)
    }

    /// [`open`](Self::open), keeping the bytes (the tag is cut off, not copied).
    pub fn open_owned(&self, key: &str, mut sealed: Vec<u8>) -> Option<Vec<u8>> {
        let len = self.open(key, &sealed)?.len();
        sealed.truncate(len);
        Some(sealed)
    }
}

/// What a shared value read under one of our keys turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened<T> {
    /// Absent or empty (never written, or released).
    Absent,
    /// Written by a VM of this configuration.
    Genuine(T),
    /// Present but its tag does not match, or it does not decode: another writer's.
    Forged,
}

impl<T> Opened<T> {
    /// Reads a value: empty is absent; one that does not open or `decode` refuses is forged.
    pub fn of(
        seal: &SealKey,
        key: &str,
        bytes: Option<&[u8]>,
        decode: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Opened<T> {
        match bytes {
            None | Some([]) => Opened::Absent,
            Some(b) => match seal.open(key, b).and_then(decode) {
                Some(v) => Opened::Genuine(v),
                None => Opened::Forged,
            },
        }
    }

    /// The genuine value.
    pub fn genuine(self) -> Option<T> {
        match self {
            Opened::Genuine(v) => Some(v),
            _ => None,
        }
    }

    /// Whether it is forged.
    pub fn is_forged(&self) -> bool {
        matches!(self, Opened::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_and_configuration_only() {
        let ours = SealKey::from_config(br#"{"sources": {"a": {}}}"#);
        let theirs = SealKey::from_config(br#"{"sources": {"a": {}}} "#);
        let sealed = ours.seal("k.table", b"value".to_vec());
        assert_eq!(ours.open("k.table", &sealed), Some(&b"value"[..]));
        assert_eq!(ours.open("k.status", &sealed), None, "another key");
        assert_eq!(
            theirs.open("k.table", &sealed),
            None,
            "another configuration"
        );
        assert_eq!(
            ours.open_owned("k.table", sealed.clone()),
            Some(b"value".to_vec())
        );
    }

    #[test]
    fn a_changed_truncated_or_extended_value_does_not_open() {
        let key = SealKey::from_config(b"config");
        let sealed = key.seal("k", b"0123456789abcdef".to_vec());
        for at in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert_eq!(key.open("k", &bad), None, "byte {at}");
        }
        for cut in 0..sealed.len() {
            assert_eq!(key.open("k", &sealed[..cut]), None, "cut at {cut}");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(key.open("k", &longer), None);
    }

    #[test]
    fn empty_is_absent_and_anything_else_that_does_not_open_is_forged() {
        let key = SealKey::from_config(b"config");
        let decode = |b: &[u8]| (b.len() == 2).then(|| b.to_vec());
        assert_eq!(Opened::of(&key, "k", None, decode), Opened::Absent);
        assert_eq!(Opened::of(&key, "k", Some(&[]), decode), Opened::Absent);
        assert_eq!(
            Opened::of(&key, "k", Some(&[0xff; 24]), decode),
            Opened::Forged
        );
        let good = key.seal("k", vec![1, 2]);
        assert_eq!(
            Opened::of(&key, "k", Some(&good), decode),
            Opened::Genuine(vec![1, 2])
        );
        let wrong_shape = key.seal("k", vec![1, 2, 3]);
        assert!(Opened::of(&key, "k", Some(&wrong_shape), decode).is_forged());
    }
}
