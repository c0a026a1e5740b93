//! One value shared by every worker and replaced as a whole: the policy bound to the sources'
//! current lists (one table per process, docs/sources.md).

use std::sync::{Arc, RwLock};

/// One value shared by every worker, replaced as a whole. A reader takes an `Arc` to the value
/// current at that moment and keeps it as long as it likes; a replacement never changes it.
pub struct Published<T> {
    current: RwLock<Arc<T>>,
}

impl<T> Published<T> {
    /// Publishes `value`.
    pub fn new(value: T) -> Self {
        Published {
            current: RwLock::new(Arc::new(value)),
        }
    }

    /// The value current now.
    pub fn load(&self) -> Arc<T> {
        match self.current.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the value (the old one lives on while a reader holds it).
    pub fn store(&self, value: T) {
        let value = Arc::new(value);
        match self.current.write() {
            Ok(mut v) => *v = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_the_value_it_took_when_a_new_one_is_published() {
        let p = Published::new(1);
        let taken = p.load();
        p.store(2);
        assert_eq!(*taken, 1);
        assert_eq!(*p.load(), 2);
    }
}
