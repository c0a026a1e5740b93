//! client-ip-filter: a proxy-wasm filter for Envoy and Istio (an HTTP filter, or a network filter
//! for TCP and TLS passthrough) that resolves the real client address (PROXY protocol, trusted
//! forwarding headers), enforces IP allow/deny lists and writes client-IP headers. The behaviour
//! contract is `docs/` (indexed by `docs/README.md`); the README is the guide.
//!
//! The crate is a pure core, testable natively, and a thin proxy-wasm adapter (`adapter`:
//! the root, HTTP stream, network connection, compiled-configuration, metrics, identity and
//! sources modules; the contexts are built for wasm32 only, the per-request logic they run is
//! generic over [`host::StreamHost`] and unit-tested natively with a failing fake). The core's modules, each depending only on modules
//! listed before it (dependencies point one way):
//! - [`host`]: the proxy-wasm host calls, returning the host's status instead of panicking.
//! - [`filter_type`]: which kind of Envoy filter a configuration is for, and a mismatch.
//! - [`addr`]: address text, forwarding-header entries, canonical (mapped-folded) addresses.
//! - [`ipset`]: compiled CIDR sets with logarithmic lookups.
//! - [`chain`]: the forwarding chain, read right to left, lazily.
//! - [`resolve`]: which address of the chain is the client.
//! - [`identity`]: private-link identities from PROXY v2 TLVs (AWS, Azure, GCP).
//! - [`path`]: the forms of a request path that path rules are decided on.
//! - [`access`]: allow/deny lists, rules, verdicts.
//! - [`forward`]: the header plan.
//! - [`rate_limit`]: the per-client rate-limit key (Envoy's limiters count).
//! - [`policy`]: the per-request decision.
//! - [`connection`]: the connection-level mode (network filter): the per-connection decision.
//! - [`tally`]: the decision counters, counted in the VM and flushed in batches.
//! - [`source`]: lists from a list server (formats, schedule, shared table, lease).
//! - [`bind`]: a policy bound to its sources' current lists.
//! - [`config`]: JSON configuration → [`policy::Policy`], with key-path errors (one module per
//!   section).

pub mod access;
pub mod addr;
pub mod bind;
pub mod chain;
pub mod config;
pub mod connection;
pub mod filter_type;
pub mod forward;
pub mod host;
pub mod identity;
pub mod ipset;
pub mod path;
pub mod policy;
pub mod rate_limit;
pub mod resolve;
pub mod source;
pub mod tally;

#[cfg(test)]
mod testutil;

// The contexts are wasm32 only; natively, the per-request logic is unit-tested with a fake host.
#[cfg(any(target_arch = "wasm32", test))]
mod adapter;
