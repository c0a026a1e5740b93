//! Emptying what a replaced configuration left in shared data. proxy-wasm cannot delete a key, so a
//! configuration's published tables (8 MB for a million IPv4 ranges) would stay in Envoy's shared
//! data until Envoy restarts; overwriting them with an empty value frees them.
//!
//! When a configuration's sources go away in a VM (its root context is replaced or deleted), the
//! VM remembers it as [`Retired`], with its seal key. A VM that fetches for a current configuration
//! then watches each retired one's lease: while some VM still runs that configuration, one of them
//! holds its lease (a VM serving requests takes a free lease within 3 s, and the holder renews it
//! every tick). Once no genuine, unexpired lease has been seen for [`RETIRE_AFTER_MS`], no VM uses
//! the configuration any more and its values are emptied. Should one still run it after all (it
//! could not keep its lease), emptying costs it nothing it holds: a VM keeps the list it adopted,
//! and an empty status or table is no value, so its VMs take the lease and fetch again.

use super::seal::{Opened, SealKey};
use super::table::Lease;

/// How long a retired configuration's lease must have been free before its values are emptied.
pub const RETIRE_AFTER_MS: u64 = 30_000;

/// A configuration whose sources went away in this VM.
#[derive(Clone, Debug)]
pub struct Retired {
    /// Its shared-data key prefix.
    pub prefix: String,
    seal: SealKey,
    /// Its sources' names.
    names: Vec<String>,
    /// Since when its lease has been seen free.
    free_since: Option<u64>,
}

impl Retired {
    /// A configuration with this prefix, seal key and sources.
    pub fn new(prefix: String, seal: SealKey, names: Vec<String>) -> Retired {
        Retired {
            prefix,
            seal,
            names,
            free_since: None,
        }
    }

    /// Its lease's key.
    pub fn lease_key(&self) -> String {
        format!("{}lease", self.prefix)
    }

    /// Given its lease as read at `now`: the keys to overwrite with an empty value now (then it is
    /// forgotten), or None while it may still be in use.
    pub fn step(&mut self, now: u64, lease: Option<&[u8]>) -> Option<Vec<String>> {
        let key = self.lease_key();
        let held = Opened::of(&self.seal, &key, lease, Lease::decode)
            .genuine()
            .is_some_and(|l| now <= l.expires_ms);
        if held {
            self.free_since = None;
            return None;
        }
        let since = *self.free_since.get_or_insert(now);
        if now < since.saturating_add(RETIRE_AFTER_MS) {
            return None;
        }
        let mut keys: Vec<String> = self
            .names
            .iter()
            .flat_map(|n| {
                [
                    format!("{}{n}.table", self.prefix),
                    format!("{}{n}.status", self.prefix),
                ]
            })
            .collect();
        keys.push(key);
        keys.push(format!("{}idle", self.prefix));
        Some(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retired() -> (Retired, SealKey) {
        let seal = SealKey::from_config(b"old configuration");
        let r = Retired::new("p.".into(), seal, vec!["a".into(), "b".into()]);
        (r, seal)
    }

    fn lease(seal: &SealKey, expires_ms: u64) -> Vec<u8> {
        seal.seal(
            "p.lease",
            Lease {
                holder: 7,
                expires_ms,
            }
            .encode(),
        )
    }

    #[test]
    fn a_retired_configuration_is_emptied_once_its_lease_has_been_free_for_30_s() {
        let (mut r, _) = retired();
        assert_eq!(r.step(1_000, None), None);
        assert_eq!(r.step(1_000 + RETIRE_AFTER_MS - 1, Some(&[])), None);
        let keys = r.step(1_000 + RETIRE_AFTER_MS, None).unwrap();
        assert_eq!(
            keys,
            [
                "p.a.table",
                "p.a.status",
                "p.b.table",
                "p.b.status",
                "p.lease",
                "p.idle"
            ]
        );
    }

    #[test]
    fn a_retired_configuration_still_leased_by_some_vm_is_kept() {
        let (mut r, seal) = retired();
        assert_eq!(r.step(1_000, None), None);
        for t in (2_000..200_000).step_by(1_000) {
            assert_eq!(r.step(t, Some(&lease(&seal, t + 5_000))), None, "at {t}");
        }
        // The lease lapses (its last VM went away): the wait starts again from then.
        assert_eq!(r.step(300_000, Some(&lease(&seal, 204_000))), None);
        assert!(r.step(300_000 + RETIRE_AFTER_MS, None).is_some());
    }

    #[test]
    fn a_forged_lease_does_not_keep_a_retired_configuration() {
        let (mut r, _) = retired();
        let other = SealKey::from_config(b"another configuration");
        let forged = lease(&other, u64::MAX);
        assert_eq!(r.step(0, Some(&forged)), None);
        assert!(r.step(RETIRE_AFTER_MS, Some(&forged)).is_some());
    }
}
