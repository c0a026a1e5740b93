//! The counters of one configuration (spec §5), defined once at configure time.

use log::debug;

use crate::access::Verdict;
use crate::host::{self, HostError};
use crate::policy::{Decision, Origin, Policy};

/// Counter ids of one configuration.
pub(super) struct Metrics {
    allowed: u32,
    denied: u32,
    dry_run_denied: u32,
    invalid: u32,
    downstream_from_xff: u32,
    /// Per rule, in rule order: allowed, denied, dry_run_denied.
    rules: Vec<[u32; 3]>,
}

impl Metrics {
    /// Defines (or finds) every counter the policy can count; the name that failed otherwise.
    pub(super) fn define(policy: &Policy) -> Result<Metrics, (String, HostError)> {
        let counter = |name: String| host::define_counter(&name).map_err(|status| (name, status));
        let mut rules = Vec::with_capacity(policy.access.rules.len());
        for rule in &policy.access.rules {
            let base = format!("client_ip.rule.{}", rule.name);
            rules.push([
                counter(format!("{base}.allowed"))?,
                counter(format!("{base}.denied"))?,
                counter(format!("{base}.dry_run_denied"))?,
            ]);
        }
        Ok(Metrics {
            allowed: counter("client_ip.allowed".into())?,
            denied: counter("client_ip.denied".into())?,
            dry_run_denied: counter("client_ip.dry_run_denied".into())?,
            invalid: counter("client_ip.invalid".into())?,
            downstream_from_xff: counter("client_ip.downstream_from_xff".into())?,
            rules,
        })
    }

    /// Counts a decision. Each count is one `increment_metric` call, made as the request is
    /// decided, so `/stats` is exact at any moment (batching them would save about a
    /// microsecond per request: see BENCHMARKS.md).
    pub(super) fn count(&self, decision: &Decision) {
        let slot = match decision.verdict {
            Verdict::Allow => 0,
            Verdict::Deny => 1,
            Verdict::DryRunDeny => 2,
        };
        increment([self.allowed, self.denied, self.dry_run_denied][slot]);
        if let Some(rule) = decision.rule.and_then(|i| self.rules.get(i)) {
            increment(rule[slot]);
        }
        if decision.invalid {
            increment(self.invalid);
        }
        if decision.downstream.origin == Origin::SourceAddressFromXff {
            increment(self.downstream_from_xff);
        }
    }
}

fn increment(metric: u32) {
    if let Err(status) = host::increment_metric(metric, 1) {
        debug!("increment_metric({metric}) failed: {status:?}");
    }
}
