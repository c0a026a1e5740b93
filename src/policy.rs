//! The compiled policy and the per-request decision: the whole filter, minus the host calls.
//! The proxy-wasm adapter reads the downstream address and the headers, asks for a [`Decision`],
//! and applies it.

use crate::access::{Access, Verdict};
use crate::addr::{parse_socket_addr, ClientAddr};
use crate::chain::HeaderLines;
use crate::forward::{Forwarding, HeaderPlan};
use crate::resolve::Resolver;

/// The default name of the connection filter state holding the downstream address.
pub const DEFAULT_DOWNSTREAM_FILTER_STATE: &str = "client_ip.downstream_address";

/// Where the downstream address was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The connection filter state written by `set_filter_state` (not touched by XFF processing).
    FilterState,
    /// The `source.address` property, with a real port: the connection's peer.
    SourceAddress,
    /// The `source.address` property with port 0: the HTTP connection manager derived it from
    /// X-Forwarded-For, a header the client may have written (counted in `downstream_from_xff`).
    SourceAddressFromXff,
    /// Neither held an address.
    Missing,
}

/// Who opened the connection to Envoy, as Envoy recovered it (the PROXY protocol source, or the
/// TCP peer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downstream {
    /// The address, when one could be read.
    pub addr: Option<ClientAddr>,
    /// Where it was read.
    pub origin: Origin,
}

impl Downstream {
    /// Reads the downstream address: the filter state value first; else `source.address`, asked
    /// for only when needed (a host call).
    pub fn read(
        filter_state: Option<&[u8]>,
        source_address: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Downstream {
        if let Some(addr) = filter_state.and_then(socket_addr_bytes) {
            return Downstream {
                addr: Some(addr),
                origin: Origin::FilterState,
            };
        }
        match source_address().as_deref().and_then(socket_addr_bytes) {
            Some(addr) if addr.port().is_none() => Downstream {
                addr: Some(addr),
                origin: Origin::SourceAddressFromXff,
            },
            Some(addr) => Downstream {
                addr: Some(addr),
                origin: Origin::SourceAddress,
            },
            None => Downstream {
                addr: None,
                origin: Origin::Missing,
            },
        }
    }

    /// A downstream address read from the filter state (tests and benches).
    pub fn from_filter_state(text: &str) -> Downstream {
        Downstream::read(Some(text.as_bytes()), || None)
    }
}

fn socket_addr_bytes(bytes: &[u8]) -> Option<ClientAddr> {
    let text = std::str::from_utf8(bytes).ok()?;
    parse_socket_addr(text).ok()
}

/// The request as the filter sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Who opened the connection.
    pub downstream: Downstream,
    /// All request header lines in wire order, pseudo-headers included.
    pub headers: &'a HeaderLines,
}

impl Request<'_> {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

/// What the filter decided for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The resolved client, when known.
    pub client: Option<ClientAddr>,
    /// The downstream address used.
    pub downstream: Downstream,
    /// Resolution read an invalid entry.
    pub invalid: bool,
    /// Access control's verdict.
    pub verdict: Verdict,
    /// Index of the deciding rule in [`Access::rules`]; None when the top level decided.
    pub rule: Option<usize>,
}

/// The compiled configuration: immutable, shared by every stream.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Name of the connection filter state holding the downstream address.
    pub downstream_filter_state: String,
    /// The `client_ip` section.
    pub resolver: Resolver,
    /// The `access` section.
    pub access: Access,
    /// The `forward` section.
    pub forwarding: Forwarding,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            downstream_filter_state: DEFAULT_DOWNSTREAM_FILTER_STATE.to_string(),
            resolver: Resolver::default(),
            access: Access::default(),
            forwarding: Forwarding::default(),
        }
    }
}

impl Policy {
    /// Resolves the client and decides access for a request.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        let resolution = self
            .resolver
            .resolve(request.downstream.addr, request.headers);
        let (authority, path) = if self.access.rules.is_empty() {
            ("", "")
        } else {
            (request.header(":authority"), request.header(":path"))
        };
        let (verdict, rule) = self.access.decide(
            resolution.client.map(|c| c.ip()),
            request.downstream.addr.map(|d| d.ip()),
            authority,
            path,
        );
        Decision {
            client: resolution.client,
            downstream: request.downstream,
            invalid: resolution.invalid,
            verdict,
            rule,
        }
    }

    /// The header edits for an admitted request.
    pub fn header_plan<'p>(&'p self, request: &Request<'_>, decision: &Decision) -> HeaderPlan<'p> {
        self.forwarding
            .plan(decision.client, request.downstream.addr, request.headers)
    }

    /// The name of the rule that decided, if any.
    pub fn rule_name(&self, decision: &Decision) -> Option<&str> {
        decision.rule.map(|i| self.access.rules[i].name.as_str())
    }
}

#[cfg(test)]
mod tests {
    //! Spec §1 (the downstream address) and whole-request decisions.
    use super::*;
    use crate::config::parse;
    use crate::testutil::headers as h;

    #[test]
    fn downstream_is_read_from_filter_state_first() {
        let mut asked = false;
        let d = Downstream::read(Some(b"203.0.113.7:4000"), || {
            asked = true;
            Some(b"10.0.0.1:0".to_vec())
        });
        assert_eq!(d.origin, Origin::FilterState);
        assert_eq!(d.addr.unwrap().to_string(), "203.0.113.7");
        assert_eq!(d.addr.unwrap().port(), Some(4000));
        assert!(
            !asked,
            "source.address must not be read when the filter state has the address"
        );
    }

    #[test]
    fn downstream_falls_back_to_source_address() {
        let d = Downstream::read(None, || Some(b"[2001:db8::7]:5".to_vec()));
        assert_eq!(d.origin, Origin::SourceAddress);
        assert_eq!(d.addr.unwrap().to_string(), "2001:db8::7");
        // An unreadable filter state value falls back too.
        let d = Downstream::read(Some(b"garbage"), || Some(b"10.0.0.1:7".to_vec()));
        assert_eq!(d.origin, Origin::SourceAddress);
    }

    #[test]
    fn downstream_with_port_0_from_source_address_is_xff_derived() {
        let d = Downstream::read(None, || Some(b"6.6.6.6:0".to_vec()));
        assert_eq!(d.origin, Origin::SourceAddressFromXff);
        assert_eq!(d.addr.unwrap().to_string(), "6.6.6.6");
    }

    #[test]
    fn downstream_missing_everywhere_is_unknown() {
        let d = Downstream::read(None, || None);
        assert_eq!((d.addr, d.origin), (None, Origin::Missing));
        let d = Downstream::read(None, || Some(b"/tmp/pipe".to_vec()));
        assert_eq!((d.addr, d.origin), (None, Origin::Missing));
    }

    #[test]
    fn mapped_proxy_protocol_source_is_the_ipv4_client() {
        let d = Downstream::from_filter_state("[::ffff:203.0.113.9]:1234");
        assert_eq!(d.addr.unwrap().to_string(), "203.0.113.9");
    }

    #[test]
    fn a_whole_request_is_resolved_decided_and_planned() {
        let (policy, _) = parse(
            br#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
                 "access": {"allow": ["203.0.113.0/24"],
                            "rules": [{"name": "admin", "path_prefixes": ["/admin"], "allow": ["203.0.113.10"]}]},
                 "forward": {"headers": ["x-real-ip", "x-client-ip"], "port_header": "x-client-port"}}"#,
        )
        .unwrap();
        let headers = h(&[
            (":authority", "example.com"),
            (":path", "/admin/users?x=1"),
            ("x-forwarded-for", "6.6.6.6, 203.0.113.5:7000"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        let request = Request {
            downstream: Downstream::from_filter_state("10.1.2.3:5555"),
            headers: &headers,
        };
        let d = policy.decide(&request);
        assert_eq!(d.client.unwrap().to_string(), "203.0.113.5");
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(policy.rule_name(&d), Some("admin"));
        let plan = policy.header_plan(&request, &d).to_vec();
        assert_eq!(
            plan,
            vec![
                ("x-real-ip".to_string(), Some("203.0.113.5".to_string())),
                ("x-client-ip".to_string(), Some("203.0.113.5".to_string())),
                ("x-client-port".to_string(), Some("7000".to_string())),
            ]
        );
    }
}
