//! The connection's private-link identity (docs/private-link.md): read from the filter state, counted,
//! recorded for access logs and forwarded in `forward.link_header`.
//!
//! Exists only for a configuration that uses identities (identity list entries or a link header):
//! the default configuration makes none of these host calls. Per kind read, one property read
//! from the route that answered last time for that kind (a deployment uses one route: the
//! `proxy_protocol` listener filter's own filter state, or a `set_filter_state` copy), and one
//! from the other route only when the first has nothing.

use std::cell::Cell;

use log::debug;

use super::http::HostEdits;
use super::{property, set_filter_state};
use crate::host::{PropertyPath, StreamHost};
use client_ip_core::forward::HeaderOp;
use client_ip_core::identity::{describe_read, read_value, Kind, Link, Route};
use client_ip_core::policy::Policy;

/// The filter state written for access logs: `wasm.client_link`.
const CLIENT_LINK: PropertyPath = PropertyPath::fixed(b"client_link");

/// The map the `proxy_protocol` listener filter fills with `tlv_location: FILTER_STATE`.
const TLV_FILTER_STATE: &str = "envoy.network.proxy_protocol.tlv";

/// One kind the configuration reads, with its two property paths.
struct KindRead {
    kind: Kind,
    tlv: PropertyPath,
    copy: PropertyPath,
    /// The copy answered last time: read it first (a hint only; the other route is still read
    /// when the first has nothing). A `set_filter_state` copy always exists (`-` when the TLV was
    /// missing), so on that route each kind costs one read.
    copy_first: Cell<bool>,
}

/// Everything a request needs to read and apply identities, prepared at configure time.
pub(super) struct LinkReader {
    kinds: Vec<KindRead>,
    header: Option<String>,
}

impl LinkReader {
    /// The reader of a policy, or None when the policy uses no identity (then nothing is read).
    pub(super) fn new(policy: &Policy) -> Option<LinkReader> {
        if policy.link.kinds.is_empty() {
            return None;
        }
        let kinds = policy
            .link
            .kinds
            .iter()
            .map(|kind| KindRead {
                kind,
                tlv: PropertyPath::new(&["filter_state", TLV_FILTER_STATE, kind.tlv_key()]),
                copy: PropertyPath::new(&["filter_state", kind.copy_key()]),
                copy_first: Cell::new(false),
            })
            .collect();
        Some(LinkReader {
            kinds,
            header: policy.link.header.clone(),
        })
    }

    /// Reads the connection's identity.
    pub(super) fn read(&self, host: &mut impl StreamHost) -> Link {
        Link::from_reads(self.kinds.iter().map(|k| {
            let routes = [
                (Route::TlvFilterState, &k.tlv),
                (Route::MetadataCopy, &k.copy),
            ];
            let order = if k.copy_first.get() { [1, 0] } else { [0, 1] };
            let (route, value) = order
                .into_iter()
                .find_map(|i| property(host, routes[i].1).map(|v| (routes[i].0, Some(v))))
                .unwrap_or((Route::MetadataCopy, None));
            if value.is_some() {
                k.copy_first.set(route == Route::MetadataCopy);
            }
            let read = read_value(k.kind, route, value.as_deref());
            if let Some(value) = &value {
                debug!("{}", describe_read(k.kind, route, value, &read));
            }
            read
        }))
    }

    /// Records the identity (`text`: its text) for access logs (`wasm.client_link`). An invalid
    /// TLV is counted with the decision (`client_ip.link_invalid`, in the VM's tally).
    pub(super) fn record(&self, host: &mut impl StreamHost, text: Option<&str>) {
        if let Some(text) = text {
            set_filter_state(host, &CLIENT_LINK, text);
        }
    }

    /// On an admitted request: `forward.link_header` set to the identity's text, or removed.
    pub(super) fn forward(&self, host: &mut impl StreamHost, text: Option<&str>) {
        let Some(name) = &self.header else { return };
        let edit = HeaderOp::set_or_remove(name, text);
        if let Err(failed) = edit.apply(&mut HostEdits(host)) {
            debug!("cannot edit request header: {}", failed.detail);
        }
    }
}
