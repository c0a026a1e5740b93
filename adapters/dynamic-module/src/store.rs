//! The process's shared values for list sources: what proxy-wasm's shared data is to the wasm
//! build (a key → bytes map with compare-and-swap tokens), here one map in the process. The core's
//! source machine (`source::machine`) reads and writes its lease, statuses and published tables
//! through it unchanged; in a native module every configuration lives in one process, so the
//! lease is only ever contested by two configurations with the same bytes (an update of a
//! listener while the old one drains), exactly as between VMs.
//!
//! A published table is kept here as bytes while a configuration with its prefix lives; the
//! prefix's values are removed when the last such configuration goes away ([`Store::release`]).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use client_ip_core::source::machine::Shared;

/// Why a write was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    /// `cas` was not the value's current token.
    CasMismatch,
    /// The store is unusable (a thread panicked holding it).
    Poisoned,
}

#[derive(Default)]
struct Inner {
    values: HashMap<String, (Vec<u8>, u32)>,
    /// Live configurations per key prefix.
    users: HashMap<String, usize>,
}

/// Shared values with compare-and-swap tokens (proxy-wasm's shared-data semantics).
#[derive(Default)]
pub struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    /// The process's store.
    pub fn process() -> &'static Store {
        static STORE: OnceLock<Store> = OnceLock::new();
        STORE.get_or_init(Store::default)
    }

    /// A value and its token; None when absent.
    pub fn get(&self, key: &str) -> Shared {
        let inner = self.inner.lock().ok()?;
        inner.values.get(key).cloned()
    }

    /// Writes a value: unconditionally when `cas` is 0, else only if `cas` is its current token
    /// (an absent value has none). Each write gives the value a new token.
    pub fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), WriteError> {
        let mut inner = self.inner.lock().map_err(|_| WriteError::Poisoned)?;
        let token = match inner.values.get(key) {
            Some((_, current)) if cas != 0 && *current != cas => {
                return Err(WriteError::CasMismatch)
            }
            None if cas != 0 => return Err(WriteError::CasMismatch),
            Some((_, current)) => current.wrapping_add(1).max(1),
            None => 1,
        };
        inner
            .values
            .insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }

    /// A configuration using `prefix` starts.
    pub fn acquire(&self, prefix: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            *inner.users.entry(prefix.to_string()).or_default() += 1;
        }
    }

    /// A configuration using `prefix` is gone; the last one removes the prefix's values. True
    /// when they were removed.
    pub fn release(&self, prefix: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else {
            return false;
        };
        let left = match inner.users.get_mut(prefix) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left > 0 {
            return false;
        }
        inner.users.remove(prefix);
        inner.values.retain(|k, _| !k.starts_with(prefix));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_token_is_refused() {
        let s = Store::default();
        s.set("k", b"a", 0).unwrap();
        let (_, cas) = s.get("k").unwrap();
        s.set("k", b"b", cas).unwrap();
        assert_eq!(s.set("k", b"c", cas), Err(WriteError::CasMismatch));
        assert_eq!(s.get("k").unwrap().0, b"b");
    }

    #[test]
    fn a_conditional_write_of_an_absent_value_is_refused() {
        let s = Store::default();
        assert_eq!(s.set("k", b"a", 7), Err(WriteError::CasMismatch));
        assert!(s.get("k").is_none());
    }

    #[test]
    fn the_last_user_of_a_prefix_removes_its_values() {
        let s = Store::default();
        s.acquire("p.");
        s.acquire("p.");
        s.set("p.lease", b"x", 0).unwrap();
        s.set("q.lease", b"y", 0).unwrap();
        assert!(!s.release("p."));
        assert!(s.get("p.lease").is_some());
        assert!(s.release("p."));
        assert!(s.get("p.lease").is_none());
        assert!(s.get("q.lease").is_some());
    }
}
