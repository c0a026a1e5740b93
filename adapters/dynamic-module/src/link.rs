//! The connection's private-link identity (docs/private-link.md), read from what Envoy's
//! proxy_protocol listener filter keeps of the PROXY v2 TLVs, by the same two routes as the
//! `.wasm`: the TLV filter state object (`tlv_location: FILTER_STATE`, which a dynamic module reads
//! serialized as a JSON object of the TLV keys), else the `set_filter_state` copy
//! `client_ip.<key>` of the dynamic metadata. Each value is judged by the core
//! ([`read_value`]). Only configurations using identities read anything.

use log::debug;

use client_ip_core::forward::HeaderOp;
use client_ip_core::identity::{describe_read, read_value, Kind, Link, Route};
use client_ip_core::policy::Policy;

use crate::host::StreamHost;
use crate::http::HostEdits;

/// The proxy_protocol filter's TLV filter state object.
const TLV_FILTER_STATE: &str = "envoy.network.proxy_protocol.tlv";
/// Filter state `wasm.client_link`: the identity, for access logs.
const CLIENT_LINK: &str = "wasm.client_link";

/// How one configuration reads identities.
pub struct LinkReader {
    /// Each kind the configuration uses, with the key of its metadata copy.
    kinds: Vec<(Kind, &'static str)>,
    /// `forward.link_header`.
    header: Option<String>,
}

impl LinkReader {
    /// The reader of `policy`; None when it uses no identity (nothing is read).
    pub fn new(policy: &Policy) -> Option<LinkReader> {
        if policy.link.kinds.is_empty() {
            return None;
        }
        let kinds = policy
            .link
            .kinds
            .iter()
            .map(|kind| (kind, kind.copy_key()))
            .collect();
        Some(LinkReader {
            kinds,
            header: policy.link.header.clone(),
        })
    }

    /// The connection's identity: each kind from the TLV object, else from its copy.
    pub fn read(&self, host: &mut impl StreamHost) -> Link {
        let object = host
            .filter_state(TLV_FILTER_STATE)
            .and_then(|bytes| serde_json::from_slice::<serde_json::Map<_, _>>(&bytes).ok());
        Link::from_reads(self.kinds.iter().map(|(kind, copy)| {
            let from_tlv = object
                .as_ref()
                .and_then(|o| o.get(kind.tlv_key()))
                .and_then(|v| v.as_str())
                .map(|s| s.as_bytes().to_vec());
            let (route, value) = match from_tlv {
                Some(v) => (Route::TlvFilterState, Some(v)),
                None => (Route::MetadataCopy, host.filter_state(copy)),
            };
            let read = read_value(*kind, route, value.as_deref());
            if let Some(value) = &value {
                debug!("{}", describe_read(*kind, route, value, &read));
            }
            read
        }))
    }

    /// Filter state `wasm.client_link` when there is an identity.
    pub fn record(&self, host: &mut impl StreamHost, text: Option<&str>) {
        if let Some(text) = text {
            if let Err(e) = host.set_filter_state(CLIENT_LINK, text) {
                debug!("cannot set filter state {CLIENT_LINK}: {e:?}");
            }
        }
    }

    /// `forward.link_header`: set to the identity, or removed (a client's forgery never passes).
    pub fn forward(&self, host: &mut impl StreamHost, text: Option<&str>) {
        let Some(name) = &self.header else { return };
        let edit = HeaderOp::set_or_remove(name, text);
        if let Err(failed) = edit.apply(&mut HostEdits(host)) {
            debug!("cannot edit request header: {}", failed.detail);
        }
    }
}
