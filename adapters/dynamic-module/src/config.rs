//! The filter configuration: the same JSON as the `.wasm`'s, given as the filter's
//! `filter_config` (a `google.protobuf.StringValue`), compiled once by
//! [`client_ip_core::config`] when Envoy creates the filter configuration. An error refuses the
//! configuration (Envoy rejects it) and is logged as the `.wasm` logs it,
//! `invalid configuration: <key path>: <what is wrong>`.
//!
//! The compiled configuration is immutable and shared by every worker thread's streams.

use client_ip_core::bind::SourcePlan;
use client_ip_core::config;
use client_ip_core::filter_type::FilterType;
use client_ip_core::policy::Decision;
use client_ip_core::policy::{HeaderReads, Policy};
use client_ip_core::tally::{Slots, Tally};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::host::HostError;
use crate::link::LinkReader;

/// One filter configuration, compiled.
pub struct Compiled {
    /// The decision policy.
    pub policy: Policy,
    /// Which request headers a decision can need, worked out once.
    pub reads: HeaderReads,
    /// The counters and which of them a decision counts.
    pub slots: Slots,
    /// Envoy's id of each counter, by slot.
    pub ids: Vec<usize>,
    /// How identities are read (only for configurations using them).
    pub link: Option<LinkReader>,
    /// The events an operator must hear of but that may come with every request (a refusal for a
    /// downstream address from X-Forwarded-For, a header edit Envoy refused), gathered by the
    /// core's [`Tally`] and warned about at most once a minute per kind, with their count. Its
    /// counts are unused (Envoy counts); locked only for such events.
    alarms: Mutex<Tally>,
    /// The versions of the source lists the policy is bound to (filter state
    /// `wasm.client_ip_lists`, docs/sources.md); None when the configuration names no source.
    pub lists: Option<String>,
}

impl Compiled {
    /// Compiles `json`, defining each counter with `define` (Envoy allows it only now). The
    /// error is the line to log.
    pub fn new(
        json: &[u8],
        define: impl FnMut(&str) -> Result<usize, HostError>,
    ) -> Result<Compiled, String> {
        Compiled::sourced(json, define).map(|(compiled, _)| compiled)
    }

    /// The same, with the plan of its list sources (docs/sources.md): the policy is then the
    /// template that [`Compiled::with_policy`] gets bound lists for.
    pub fn sourced(
        json: &[u8],
        mut define: impl FnMut(&str) -> Result<usize, HostError>,
    ) -> Result<(Compiled, SourcePlan), String> {
        let (policy, plan, warnings) =
            config::parse_sourced(json).map_err(|e| format!("invalid configuration: {e}"))?;
        for warning in &warnings {
            log::warn!("configuration: {warning}");
        }
        if policy.filter_type == FilterType::Network {
            return Err(
                "invalid configuration: filter_type: \"network\" is a network filter's \
                 configuration, loaded in an HTTP filter (envoy.filters.http.dynamic_modules)"
                    .to_string(),
            );
        }
        let slots = Slots::for_policy(&policy);
        let ids = slots
            .names()
            .iter()
            .map(|name| define(name).map_err(|e| format!("cannot define counter {name}: {e:?}")))
            .collect::<Result<_, _>>()?;
        log::info!(
            "configured: {} rule(s), forwarding {:?}",
            policy.access.rules.len(),
            policy.forwarding.headers
        );
        Ok((
            Compiled {
                reads: policy.header_reads(),
                link: LinkReader::new(&policy),
                alarms: Mutex::new(Tally::for_policy(&policy)),
                policy,
                slots,
                ids,
                lists: None,
            },
            plan,
        ))
    }

    /// This configuration with `policy` (the template bound to the sources' current lists, whose
    /// versions are `lists`): the same counters, already defined.
    pub fn with_policy(&self, policy: Policy, lists: Option<String>) -> Compiled {
        Compiled {
            reads: policy.header_reads(),
            link: LinkReader::new(&policy),
            alarms: Mutex::new(Tally::for_policy(&policy)),
            policy,
            slots: self.slots.clone(),
            ids: self.ids.clone(),
            lists,
        }
    }
}

impl Compiled {
    /// Notes a decision's alarm (a refusal for a downstream address from X-Forwarded-For) and
    /// logs the warnings due.
    pub fn alarm_decision(&self, decision: &Decision) {
        if decision.unverified_downstream {
            self.alarm(|t| t.count(decision));
        }
    }

    /// Notes a request refused because a header edit failed and logs the warnings due.
    pub fn alarm_edit_failure(&self, detail: impl FnOnce() -> String) {
        self.alarm(|t| t.count_edit_failure(detail));
    }

    fn alarm(&self, note: impl FnOnce(&Tally)) {
        let Ok(tally) = self.alarms.lock() else {
            return;
        };
        note(&tally);
        for warning in tally.warnings(now_ms()) {
            log::warn!("{warning}");
        }
    }
}

/// Milliseconds since the module first asked (the alarms' clock).
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(json: &str) -> Result<Compiled, String> {
        let mut next = 0;
        Compiled::new(json.as_bytes(), |_| {
            next += 1;
            Ok(next - 1)
        })
    }

    #[test]
    fn a_configuration_error_is_the_wasm_builds_line_with_its_key_path() {
        let err = compile(r#"{"access": {"allow": ["10.0.0.300/8"]}}"#)
            .err()
            .unwrap();
        assert_eq!(
            err,
            r#"invalid configuration: access.allow[0]: "10.0.0.300/8" is not an IP address or CIDR"#
        );
    }

    #[test]
    fn every_counter_is_defined_once_at_configure_time() {
        let c = compile(r#"{"access": {"rules": [{"name": "admin"}]}}"#).unwrap();
        assert_eq!(c.ids.len(), c.slots.names().len());
        assert!(c
            .slots
            .names()
            .iter()
            .any(|n| n == "client_ip.rule.admin.denied"));
    }

    #[test]
    fn a_counter_envoy_refuses_refuses_the_configuration() {
        let err = Compiled::new(b"{}", |_| {
            Err(HostError {
                call: "define_counter",
                status: 3,
            })
        })
        .err()
        .unwrap();
        assert!(
            err.starts_with("cannot define counter client_ip.allowed"),
            "{err}"
        );
    }

    #[test]
    fn a_network_configuration_is_refused_in_the_http_filter() {
        let err = compile(r#"{"filter_type": "network"}"#).err().unwrap();
        assert!(err.contains("filter_type"), "{err}");
    }
}
