//! The counters of one configuration (docs/observability.md): defined with the host once at configure time,
//! counted in the VM by a [`Tally`] and flushed from the root context's tick.

#[cfg(target_arch = "wasm32")]
use log::{debug, warn};

#[cfg(target_arch = "wasm32")]
use crate::host::{self, HostError};
use client_ip_core::policy::{Decision, Policy};
use client_ip_core::rate_limit::Keying;
use client_ip_core::tally::Tally;

/// A configuration's counters: the host's ids, and the counts not yet handed over.
pub(super) struct Metrics {
    tally: Tally,
    /// The host's counter id of each [`Tally`] slot.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    ids: Vec<u32>,
}

impl Metrics {
    /// Defines (or finds) every counter the policy can count; the name that failed otherwise.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn define(policy: &Policy) -> Result<Metrics, (String, HostError)> {
        let tally = Tally::for_policy(policy);
        let ids = tally
            .names()
            .iter()
            .map(|name| host::define_counter(name).map_err(|status| (name.clone(), status)))
            .collect::<Result<_, _>>()?;
        Ok(Metrics { tally, ids })
    }

    /// The counters of a policy with no host behind them (native unit tests).
    #[cfg(test)]
    pub(super) fn unregistered(policy: &Policy) -> Metrics {
        let tally = Tally::for_policy(policy);
        let ids = (0..tally.names().len() as u32).collect();
        Metrics { tally, ids }
    }

    /// The counts not yet flushed, by counter name (native unit tests).
    #[cfg(test)]
    pub(super) fn pending(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.tally.drain(|slot, n| {
            out.push((self.tally.names()[slot].clone(), n));
            true
        });
        out
    }

    /// Counts a decision, in the VM (no host call).
    #[inline]
    pub(super) fn count(&self, decision: &Decision) {
        self.tally.count(decision);
    }

    /// Counts a request refused because a header edit failed (no host call); `detail` goes
    /// into the next warning.
    pub(super) fn count_edit_failure(&self, detail: impl FnOnce() -> String) {
        self.tally.count_edit_failure(detail);
    }

    /// Logs the warnings that are due (at most one per kind a minute, see [`Tally::warnings`]);
    /// reads the clock only when one is pending.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn warn(&self) {
        if !self.tally.alarms_pending() {
            return;
        }
        let now = match host::now_ms() {
            Ok(now) => now,
            Err(status) => {
                debug!("cannot read the clock: {status:?}");
                return;
            }
        };
        for message in self.tally.warnings(now) {
            warn!("{message}");
        }
    }

    /// Counts a request's rate-limit keying, in the VM (no host call).
    #[inline]
    pub(super) fn count_key(&self, keying: &Keying) {
        self.tally.count_key(keying);
    }

    /// Hands the counts made since the last flush to the host: one `increment_metric` per
    /// counter that changed. A count the host refuses stays for the next flush.
    #[cfg(target_arch = "wasm32")]
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
