//! client-ip-core: the pure core of client-ip-filter, the Envoy/Istio filter that resolves the real
//! client address (PROXY protocol, trusted forwarding headers), enforces IP allow/deny lists and
//! writes client-IP headers, as an HTTP filter or a network filter for TCP and TLS passthrough. The
//! behaviour contract is `docs/` (indexed by `docs/README.md`); the README is the guide.
//!
//! This crate makes no host call: it decides, in plain Rust, from what an adapter read, and is
//! unit-tested natively. Two thin adapters read what Envoy has, call it and apply its decisions:
//! the proxy-wasm filter (`adapters/proxy-wasm`, crate `client_ip_filter`, the `.wasm`) and the
//! Envoy dynamic module (`adapters/dynamic-module`, crate `client_ip_filter_module`, the `.so`).
//! The modules, each depending only on modules listed before it (dependencies point one way):
//! - [`filter_type`]: which kind of Envoy filter a configuration is for, and a mismatch.
//! - [`addr`]: address text, forwarding-header entries, canonical (mapped-folded) addresses.
//! - [`ipset`]: compiled CIDR sets with logarithmic lookups.
//! - [`chain`]: the forwarding chain, read right to left, lazily.
//! - [`resolve`]: which address of the chain is the client.
//! - [`identity`]: private-link identities from PROXY v2 TLVs (AWS, Azure, GCP).
//! - [`path`]: the forms of a request path that path rules are decided on.
//! - [`access`]: allow/deny lists, rules, verdicts.
//! - [`forward`]: the header plan, applied through the adapter's [`forward::HeaderMap`].
//! - [`rate_limit`]: the per-client rate-limit key (Envoy's limiters count).
//! - [`policy`]: the per-request decision.
//! - [`facts`]: the filter state, rate-limit key writes and debug lines of a decision.
//! - [`connection`]: the connection-level mode (network filter): the per-connection decision.
//! - [`tally`]: the decision counters, counted by the adapter and flushed in batches.
//! - [`source`]: lists from a list server (formats, schedule, shared table, lease), its actions
//!   performed through the adapter's [`source::machine::SourceIo`].
//! - [`bind`]: a policy bound to its sources' current lists.
//! - [`config`]: JSON configuration → [`policy::Policy`], with key-path errors (one module per
//!   section).
//! - `testutil` (tests and the cargo feature `testutil` only): helpers of the unit tests.

pub mod access;
pub mod addr;
pub mod bind;
pub mod chain;
pub mod config;
pub mod connection;
pub mod facts;
pub mod filter_type;
pub mod forward;
pub mod identity;
pub mod ipset;
pub mod path;
pub mod policy;
pub mod rate_limit;
pub mod resolve;
pub mod source;
pub mod tally;

#[cfg(any(test, feature = "testutil"))]
pub mod testutil;
