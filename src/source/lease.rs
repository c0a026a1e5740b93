//! Which VM fetches for the whole Envoy (docs/sources.md, "One fetch per Envoy"): the decisions about the
//! lease the VMs of one configuration share in Envoy's shared data. Pure: the adapter reads the
//! shared values, asks [`step`] and [`announces_idle`], and writes what they say.
//!
//! - A free lease (absent, released or lapsed) is taken at once by a VM that has served no request
//!   (the main thread's VM never serves one), and by a VM that serves requests only once it has been
//!   free for [`GRACE_MS`].
//! - A lease is used (the VM starts fetching) only once it still names the VM [`CONFIRM_MS`] after it
//!   was taken: Envoy's compare-and-swap has no "create if absent", so two VMs may both believe they
//!   took a free key; the later write wins and only its writer sees itself a tick later.
//! - The holder renews it every tick; it lapses [`LEASE_MS`] after the last renewal.
//! - VMs that have served no request announce one of them (an idle candidate); a holder that
//!   serves requests hands the lease over when another VM is announced and no fetch is in flight.

use super::table::Lease;

/// A lease lapses this long after its last renewal (the holder renews every tick).
pub const LEASE_MS: u64 = 5_000;
/// How long a lease stays free before a VM that serves requests takes it.
pub const GRACE_MS: u64 = 3_000;
/// A taken lease is used once it still names its taker this much later (a tick or more).
pub const CONFIRM_MS: u64 = 150;

/// What this VM knows about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vm {
    /// Its random token.
    pub token: u64,
    /// It has served a request (a worker's VM).
    pub serves: bool,
    /// When it was configured (ms).
    pub created_ms: u64,
    /// When it took the lease, not yet confirmed or in use.
    pub taken_ms: Option<u64>,
    /// It holds the lease and fetches.
    pub fetching: bool,
    /// One of its fetches has not been answered yet.
    pub in_flight: bool,
}

/// What to do with the lease this tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Renew it (compare-and-swap on the value read); start fetching when `start` is set.
    Renew {
        /// The lease is confirmed and this VM does not fetch yet.
        start: bool,
    },
    /// Release it (compare-and-swap an empty value) and stop fetching: an idle VM takes over.
    HandOver,
    /// Take the free lease (compare-and-swap on the value read).
    Take,
    /// Leave it; this VM does not fetch.
    Leave,
}

/// The lease `current` (None: absent or unreadable) at `now`; `idle_other`: another VM that
/// serves no requests has announced itself.
pub fn step(now: u64, vm: &Vm, current: Option<Lease>, idle_other: bool) -> Step {
    if current.is_some_and(|l| l.holder == vm.token) {
        if vm.fetching && vm.serves && idle_other && !vm.in_flight {
            return Step::HandOver;
        }
        let confirmed = vm
            .taken_ms
            .is_none_or(|t| now >= t.saturating_add(CONFIRM_MS));
        return Step::Renew {
            start: !vm.fetching && confirmed,
        };
    }
    let free_since = current.map_or(vm.created_ms, |l| l.expires_ms);
    let free = current.is_none_or(|l| now > l.expires_ms);
    let eligible = !vm.serves || now > free_since.saturating_add(GRACE_MS);
    if free && eligible {
        Step::Take
    } else {
        Step::Leave
    }
}

/// The lease this VM writes when it takes or renews it.
pub fn held(now: u64, token: u64) -> Lease {
    Lease {
        holder: token,
        expires_ms: now.saturating_add(LEASE_MS),
    }
}

/// Whether this VM writes its idle announcement this tick, given the one there (`current`):
/// only a VM that has served no request, and only when no other VM's announcement is fresh.
pub fn announces_idle(now: u64, vm: &Vm, current: Option<Lease>) -> bool {
    !vm.serves && fresh(now, current).is_none_or(|l| l.holder == vm.token)
}

/// Whether another VM's announcement is fresh.
pub fn idle_other(now: u64, vm: &Vm, current: Option<Lease>) -> bool {
    fresh(now, current).is_some_and(|l| l.holder != vm.token)
}

fn fresh(now: u64, lease: Option<Lease>) -> Option<Lease> {
    lease.filter(|l| now <= l.expires_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: u64 = 7;
    const OTHER: u64 = 9;

    fn vm(serves: bool) -> Vm {
        Vm {
            token: ME,
            serves,
            created_ms: 1_000,
            taken_ms: None,
            fetching: false,
            in_flight: false,
        }
    }

    fn lease(holder: u64, expires_ms: u64) -> Option<Lease> {
        Some(Lease { holder, expires_ms })
    }

    #[test]
    fn a_vm_that_serves_no_requests_takes_a_free_lease_at_once() {
        assert_eq!(step(1_001, &vm(false), None, false), Step::Take);
        assert_eq!(
            step(9_000, &vm(false), lease(OTHER, 8_999), false),
            Step::Take
        );
    }

    #[test]
    fn a_vm_that_serves_requests_takes_a_free_lease_only_after_the_grace() {
        let w = vm(true);
        assert_eq!(step(1_000 + GRACE_MS, &w, None, false), Step::Leave);
        assert_eq!(step(1_001 + GRACE_MS, &w, None, false), Step::Take);
        let lapsed = lease(OTHER, 10_000);
        assert_eq!(step(10_000 + GRACE_MS, &w, lapsed, false), Step::Leave);
        assert_eq!(step(10_001 + GRACE_MS, &w, lapsed, false), Step::Take);
    }

    #[test]
    fn a_lease_held_by_another_vm_is_left_alone_until_it_lapses() {
        let held = lease(OTHER, 5_000);
        assert_eq!(step(5_000, &vm(false), held, false), Step::Leave);
        assert_eq!(step(5_001, &vm(false), held, false), Step::Take);
    }

    #[test]
    fn a_taken_lease_is_used_only_once_it_still_names_its_taker_a_tick_later() {
        let mut me = vm(false);
        me.taken_ms = Some(2_000);
        let mine = lease(ME, 7_000);
        assert_eq!(step(2_100, &me, mine, false), Step::Renew { start: false });
        assert_eq!(
            step(2_000 + CONFIRM_MS, &me, mine, false),
            Step::Renew { start: true }
        );
        // Another VM's later write won the race: this one never fetches.
        assert_eq!(step(2_200, &me, lease(OTHER, 7_000), false), Step::Leave);
    }

    #[test]
    fn the_holder_renews_the_lease_every_tick() {
        let mut me = vm(false);
        me.fetching = true;
        assert_eq!(
            step(3_000, &me, lease(ME, 3_500), false),
            Step::Renew { start: false }
        );
        assert_eq!(held(3_000, ME).expires_ms, 3_000 + LEASE_MS);
    }

    #[test]
    fn a_holder_that_serves_requests_hands_over_to_an_idle_vm() {
        let mut me = vm(true);
        me.fetching = true;
        let mine = lease(ME, 9_000);
        assert_eq!(step(5_000, &me, mine, true), Step::HandOver);
        assert_eq!(
            step(5_000, &me, mine, false),
            Step::Renew { start: false },
            "nobody idle"
        );
        me.in_flight = true;
        assert_eq!(
            step(5_000, &me, mine, true),
            Step::Renew { start: false },
            "fetch in flight"
        );
        let idle = Vm {
            fetching: true,
            ..vm(false)
        };
        assert_eq!(
            step(5_000, &idle, mine, true),
            Step::Renew { start: false },
            "it is idle itself"
        );
    }

    #[test]
    fn one_idle_vm_is_announced_at_a_time_and_never_one_that_serves_requests() {
        assert!(announces_idle(1_000, &vm(false), None));
        assert!(
            announces_idle(1_000, &vm(false), lease(ME, 1_500)),
            "refreshes its own"
        );
        assert!(!announces_idle(1_000, &vm(false), lease(OTHER, 1_500)));
        assert!(
            announces_idle(1_501, &vm(false), lease(OTHER, 1_500)),
            "a lapsed one is replaced"
        );
        assert!(!announces_idle(1_000, &vm(true), None));
        assert!(idle_other(1_000, &vm(true), lease(OTHER, 1_500)));
        assert!(!idle_other(1_000, &vm(true), lease(ME, 1_500)));
        assert!(!idle_other(1_501, &vm(true), lease(OTHER, 1_500)));
    }
}
