//! A configuration compiled once (an immutable [`Compiled`]): the policy and what every stream
//! needs from the host side, prepared ahead of it. The root context makes one per configuration
//! (and per new source list); the HTTP and network contexts hold the one current when they
//! started. Its own module so that the contexts and the root depend on it, not on each other.

use std::cell::Cell;

use super::identity::LinkReader;
use super::metrics::Metrics;
use super::reply_headers;
use crate::host::PropertyPath;
use client_ip_core::policy::{HeaderReads, Policy};

/// A configuration compiled once, shared by every stream that starts while it is current: the
/// policy, and everything a request needs from the host side prepared ahead of it.
pub(super) struct Compiled {
    pub(super) policy: Policy,
    /// The request headers the policy reads: the only ones fetched from Envoy.
    pub(super) reads: HeaderReads,
    pub(super) metrics: Metrics,
    /// `["filter_state", <downstream_filter_state>]`.
    pub(super) downstream_path: PropertyPath,
    /// The local reply's headers, serialized.
    pub(super) reply_headers: Vec<u8>,
    /// Identity reading (docs/private-link.md); None when the configuration uses no identity.
    pub(super) link: Option<LinkReader>,
    /// The versions of the source lists the policy was bound to (filter state
    /// `wasm.client_ip_lists`); None when the configuration names no source.
    pub(super) lists: Option<String>,
    /// A `filter_type` mismatch was logged (once per configuration and worker).
    pub(super) mismatch_logged: Cell<bool>,
}

impl Compiled {
    /// Compiles what the host side of a request needs for `policy`; fails when a counter
    /// cannot be defined.
    #[cfg(target_arch = "wasm32")]
    pub(super) fn new(policy: Policy) -> Result<Compiled, String> {
        let metrics = Metrics::define(&policy)
            .map_err(|(name, status)| format!("cannot define counter {name}: {status:?}"))?;
        Ok(Compiled::with(policy, metrics))
    }

    /// The same with counters no host knows (native unit tests of the contexts' logic).
    #[cfg(test)]
    pub(super) fn unregistered(policy: Policy) -> Compiled {
        let metrics = Metrics::unregistered(&policy);
        Compiled::with(policy, metrics)
    }

    /// `policy` with what a request needs of it, worked out once, and its counters.
    fn with(policy: Policy, metrics: Metrics) -> Compiled {
        Compiled {
            downstream_path: PropertyPath::new(&["filter_state", &policy.downstream_filter_state]),
            reply_headers: reply_headers(),
            reads: policy.header_reads(),
            link: LinkReader::new(&policy),
            mismatch_logged: Cell::new(false),
            lists: None,
            policy,
            metrics,
        }
    }
}
