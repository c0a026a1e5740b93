//! When a source is fetched, and whether it is available (docs/sources.md, "Fetching" and
//! "Unavailable"). Pure: the time (ms since the epoch) is passed in.

/// The first retry after a failure, in ms; each further failure doubles it, up to `refresh_s`.
pub const FIRST_RETRY_MS: u64 = 2_000;

/// The most a refresh is brought forward, in per mille of `refresh_s` (10%).
pub const MAX_JITTER_PERMILLE: u64 = 100;

/// The fetch timing of one source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    refresh_ms: u64,
    /// Failures since the last good (or not modified) response.
    failures: u32,
    /// When the next fetch is due.
    next_ms: u64,
}

impl Schedule {
    /// A schedule whose first fetch is due at once.
    pub fn new(refresh_s: u32) -> Schedule {
        Schedule {
            refresh_ms: u64::from(refresh_s) * 1000,
            failures: 0,
            next_ms: 0,
        }
    }

    /// Whether a fetch is due at `now`.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next_ms
    }

    /// When the next fetch is due.
    pub fn next_ms(&self) -> u64 {
        self.next_ms
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// A fetch succeeded (a body accepted, or not modified): the next is `refresh_s` later,
    /// brought forward by `jitter` (0..=1000, per mille of the 10% jitter window).
    pub fn succeeded(&mut self, now: u64, jitter: u32) {
        self.failures = 0;
        let window = self.refresh_ms * MAX_JITTER_PERMILLE / 1000;
        let early = window * u64::from(jitter.min(1000)) / 1000;
        self.next_ms = now.saturating_add(self.refresh_ms - early);
    }

    /// A fetch failed or its body was refused: retry sooner, backing off: 2 s, 4 s, 8 s, …,
    /// never later than `refresh_s`.
    pub fn failed(&mut self, now: u64) {
        let shift = self.failures.min(32);
        self.failures = self.failures.saturating_add(1);
        let delay = FIRST_RETRY_MS.saturating_mul(1u64 << shift);
        self.next_ms = now.saturating_add(delay.min(self.refresh_ms));
    }

    /// Starts again from a known last good time (another VM fetched until now): the next fetch
    /// is `refresh_s` after it, or at once when there is none.
    pub fn resume(&mut self, last_good_ms: Option<u64>) {
        self.failures = 0;
        self.next_ms = last_good_ms.map_or(0, |t| t.saturating_add(self.refresh_ms));
    }
}

/// Whether a source is available at `now`: it has had a good body (`last_good_ms`), and no more
/// than `max_stale_s` ago when that is set.
pub fn available(now: u64, last_good_ms: Option<u64>, max_stale_s: Option<u64>) -> bool {
    match (last_good_ms, max_stale_s) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(t), Some(max)) => now.saturating_sub(t) <= max.saturating_mul(1000),
    }
}

/// Whole seconds since the last good body.
pub fn age_s(now: u64, last_good_ms: u64) -> u64 {
    now.saturating_sub(last_good_ms) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_fetch_is_due_at_once() {
        assert!(Schedule::new(300).due(0));
    }

    #[test]
    fn refresh_is_every_refresh_s_brought_forward_by_at_most_10_percent() {
        let mut s = Schedule::new(300);
        s.succeeded(1_000, 0);
        assert_eq!(s.next_ms(), 301_000);
        assert!(!s.due(300_999) && s.due(301_000));
        s.succeeded(1_000, 1000);
        assert_eq!(s.next_ms(), 271_000, "full jitter: 10% early");
        s.succeeded(1_000, 5000);
        assert_eq!(s.next_ms(), 271_000, "jitter is capped");
        s.succeeded(1_000, 500);
        assert_eq!(s.next_ms(), 286_000);
    }

    #[test]
    fn after_a_failure_retry_sooner_backing_off_up_to_refresh_s() {
        let mut s = Schedule::new(30);
        let mut delays = Vec::new();
        for _ in 0..6 {
            s.failed(0);
            delays.push(s.next_ms());
        }
        assert_eq!(delays, [2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(s.failures(), 6);
        s.succeeded(0, 0);
        assert_eq!(s.failures(), 0);
        s.failed(0);
        assert_eq!(s.next_ms(), 2_000, "a success resets the backoff");
    }

    #[test]
    fn backoff_never_overflows() {
        let mut s = Schedule::new(u32::MAX);
        for _ in 0..100 {
            s.failed(1);
        }
        assert!(s.next_ms() > 1);
    }

    #[test]
    fn resume_follows_the_last_good_time_of_the_previous_fetcher() {
        let mut s = Schedule::new(60);
        s.resume(Some(10_000));
        assert_eq!(s.next_ms(), 70_000);
        s.resume(None);
        assert!(s.due(0));
    }

    #[test]
    fn a_source_is_unavailable_before_its_first_good_body() {
        assert!(!available(5_000, None, None));
        assert!(!available(5_000, None, Some(60)));
    }

    #[test]
    fn a_source_is_unavailable_after_max_stale_s_without_a_good_body() {
        assert!(available(61_000, Some(1_000), Some(60)));
        assert!(!available(61_001, Some(1_000), Some(60)));
        assert!(
            available(u64::MAX, Some(1_000), None),
            "no max_stale_s: never"
        );
    }

    #[test]
    fn age_is_whole_seconds_since_the_last_good_body() {
        assert_eq!(age_s(3_999, 1_000), 2);
        assert_eq!(age_s(500, 1_000), 0, "a clock step back is age 0");
    }
}
