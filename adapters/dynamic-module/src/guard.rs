//! No panic crosses into Envoy: every event hook runs its work through [`guarded`], which stops a
//! panic and answers what the hook's failing closed means (a rejected configuration, a refused
//! request). The `.so` is built with panic = "unwind" (the workspace's `native` profile) so that
//! a panic can be stopped at all.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `work`; `failed()` instead when it panics (the panic stops here).
pub fn guarded<T>(failed: impl FnOnce() -> T, work: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(value) => value,
        Err(_) => failed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_gives_the_failing_closed_answer_and_goes_no_further() {
        let refused = guarded(|| "refused", || -> &str { panic!("a bug while deciding") });
        assert_eq!(refused, "refused");
    }

    #[test]
    fn work_that_does_not_panic_gives_its_own_answer() {
        assert_eq!(guarded(|| 0, || 7), 7);
    }
}
