//! The counters of one configuration (spec §5): defined with the host once at configure time,
//! counted in the VM by a [`Tally`] and flushed from the root context's tick.

use log::debug;

use crate::host::{self, HostError};
use crate::policy::{Decision, Policy};
use crate::rate_limit::Keying;
use crate::tally::Tally;

/// A configuration's counters: the host's ids, and the counts not yet handed over.
pub(super) struct Metrics {
    tally: Tally,
    /// The host's counter id of each [`Tally`] slot.
    ids: Vec<u32>,
}

impl Metrics {
    /// Defines (or finds) every counter the policy can count; the name that failed otherwise.
    pub(super) fn define(policy: &Policy) -> Result<Metrics, (String, HostError)> {
        let tally = Tally::for_policy(policy);
        let ids = tally
            .names()
            .iter()
            .map(|name| host::define_counter(name).map_err(|status| (name.clone(), status)))
            .collect::<Result<_, _>>()?;
        Ok(Metrics { tally, ids })
    }

    /// Counts a decision, in the VM (no host call).
    #[inline]
    pub(super) fn count(&self, decision: &Decision) {
        self.tally.count(decision);
    }

    /// Counts a request's rate-limit keying, in the VM (no host call).
    #[inline]
    pub(super) fn count_key(&self, keying: &Keying) {
        self.tally.count_key(keying);
    }

    /// Hands the counts made since the last flush to the host: one `increment_metric` per
    /// counter that changed. A count the host refuses stays for the next flush.
    pub(super) fn flush(&self) {
        self.tally.drain(|slot, n| {
            let Some(&id) = self.ids.get(slot) else {
                return true;
            };
            match host::increment_metric(id, n as i64) {
                Ok(()) => true,
                Err(status) => {
                    debug!("increment_metric({id}, {n}) failed: {status:?}");
                    false
                }
            }
        });
    }
}
