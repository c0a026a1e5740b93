//! The compiled policy and the per-request decision: the whole filter, minus the host calls.
//! The proxy-wasm adapter reads the downstream address and the headers, asks for a [`Decision`],
//! and applies it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::access::{Access, Mode, Verdict};
use crate::addr::{parse_socket_addr_bytes, ClientAddr};
use crate::chain::{HeaderKind, HeaderLines};
use crate::filter_type::FilterType;
use crate::forward::{Forwarding, HeaderPlan, XffMode, X_FORWARDED_FOR};
use crate::identity::{Link, LinkPolicy};
use crate::rate_limit::{Keying, RateLimit};
use crate::resolve::Resolver;
use crate::source::geo::{Geo, GeoTable};

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

/// What to do with a request whose downstream address came from X-Forwarded-For
/// ([`Origin::SourceAddressFromXff`]): `client_ip.on_downstream_from_xff`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnDownstreamFromXff {
    /// Refuse it (the default): the filter cannot know who connected.
    #[default]
    Refuse,
    /// Take that address anyway (a client may have written it).
    Use,
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
    parse_socket_addr_bytes(bytes).ok()
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

/// The request headers a policy reads, worked out once per configuration: every header the
/// adapter fetches is a host call, and the default configuration reads none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderReads {
    /// No header at all: the decision and the plan depend on the downstream address alone.
    Nothing,
    /// These headers (lower case, no duplicates), each as one line. Enough for the comma list
    /// `x-forwarded-for`, whose lines are one list (a host that joins them with commas, as Envoy
    /// does, loses nothing), and for the pseudo-headers `:authority` and `:path`.
    Values(Vec<String>),
    /// Every line of every header, in wire order: a single-address forwarding header
    /// (`x-real-ip`, …) must be seen with all its lines, because a repeated one is invalid.
    AllLines,
}

/// Where request headers come from when a policy asks for them: the host in the filter (each
/// read a host call), header lines already in memory in tests and benches ([`InMemory`]).
pub trait HeaderSource {
    /// What a failed read carries.
    type Error;
    /// The value of the header `name` (lower case), or None when the request has none. Envoy
    /// hands over the first line's value, its inline headers (X-Forwarded-For among them) already
    /// joined into one line with commas.
    fn value(&mut self, name: &str) -> Result<Option<String>, Self::Error>;
    /// Every header line, in wire order.
    fn lines(&mut self) -> Result<Vec<(String, String)>, Self::Error>;
}

/// Header lines already in memory, as Envoy presents them, as a [`HeaderSource`]: a name's value
/// is its first line's, found case-insensitively.
pub struct InMemory<'a>(pub &'a HeaderLines);

impl HeaderSource for InMemory<'_> {
    type Error = std::convert::Infallible;

    fn value(&mut self, name: &str) -> Result<Option<String>, Self::Error> {
        let line = self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
        Ok(line.map(|(_, v)| v.clone()))
    }

    fn lines(&mut self) -> Result<Vec<(String, String)>, Self::Error> {
        Ok(self.0.to_vec())
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
    /// The connection's private-link identity, as read (docs/private-link.md).
    pub link: Link,
    /// The decision read a list naming an unavailable source with `on_unavailable: "refuse"`
    /// (docs/sources.md): the verdict is then a refusal (503 when enforced).
    pub unavailable: bool,
    /// The downstream address came from X-Forwarded-For and `on_downstream_from_xff` is
    /// `"refuse"`: the verdict is a refusal in the deciding mode, whatever the lists say.
    pub unverified_downstream: bool,
}

/// A local reply refusing a request: its status, body and `%RESPONSE_CODE_DETAILS%`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal<'a> {
    /// The HTTP status.
    pub status: u32,
    /// The body (`content-type: text/plain`).
    pub body: &'a str,
    /// What Envoy's access log shows as `%RESPONSE_CODE_DETAILS%`.
    pub details: &'static str,
}

impl Refusal<'static> {
    /// A header edit of the plan failed: the request may still carry a header the client
    /// wrote, so it is refused, never forwarded (the proxy is at fault: 500).
    pub const EDIT_FAILED: Refusal<'static> = Refusal {
        status: 500,
        body: "client-ip-filter: cannot sanitise the request headers\n",
        details: "client_ip_filter_header_edit_failed",
    };
}

/// The compiled configuration: immutable, shared by every stream.
#[derive(Clone, Debug)]
pub struct Policy {
    /// The kind of Envoy filter the configuration is for (`filter_type`, docs/network-mode.md).
    pub filter_type: FilterType,
    /// Name of the connection filter state holding the downstream address.
    pub downstream_filter_state: String,
    /// The `client_ip` section.
    pub resolver: Resolver,
    /// The `access` section.
    pub access: Access,
    /// The `forward` section.
    pub forwarding: Forwarding,
    /// Private-link identities: the kinds read and `forward.link_header` (docs/private-link.md).
    pub link: LinkPolicy,
    /// `trusted_proxies` names an unavailable source with `on_unavailable: "refuse"`.
    pub trust_unavailable: bool,
    /// `client_ip.on_downstream_from_xff`.
    pub on_downstream_from_xff: OnDownstreamFromXff,
    /// The `rate_limit` section: None when absent (no key is made).
    pub rate_limit: Option<RateLimit>,
    /// The databases of the `geo` section, as bound (docs/geo.md).
    pub geo: GeoLookup,
}

/// The country and AS number databases a policy looks clients up in (headers, filter state).
#[derive(Clone, Debug, Default)]
pub struct GeoLookup {
    /// A `geo` section is configured (the filter state is written).
    pub configured: bool,
    /// `geo.country`'s database, while available.
    pub country: Option<Arc<GeoTable>>,
    /// `geo.asn`'s database, while available.
    pub asn: Option<Arc<GeoTable>>,
}

impl GeoLookup {
    /// What the databases say of `ip` (nothing while unavailable).
    pub fn of(&self, ip: IpAddr) -> Geo {
        Geo {
            country: self.country.as_ref().and_then(|t| t.lookup(ip).country),
            asn: self.asn.as_ref().and_then(|t| t.lookup(ip).asn),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            filter_type: FilterType::Http,
            downstream_filter_state: DEFAULT_DOWNSTREAM_FILTER_STATE.to_string(),
            resolver: Resolver::default(),
            access: Access::default(),
            forwarding: Forwarding::default(),
            link: LinkPolicy::default(),
            trust_unavailable: false,
            on_downstream_from_xff: OnDownstreamFromXff::Refuse,
            rate_limit: None,
            geo: GeoLookup::default(),
        }
    }
}

impl Policy {
    /// Resolves the client and decides access for a request.
    pub fn decide(&self, request: &Request<'_>) -> Decision {
        self.decide_with_link(request, Link::default())
    }

    /// [`Policy::decide`] for a connection whose private-link identity was read as `link` (read
    /// only the kinds [`LinkPolicy::kinds`] names; the default configuration reads none).
    pub fn decide_with_link(&self, request: &Request<'_>, link: Link) -> Decision {
        let resolution = self
            .resolver
            .resolve(request.downstream.addr, request.headers);
        let (authority, path) = if self.access.rules.is_empty() {
            ("", "")
        } else {
            (request.header(":authority"), request.header(":path"))
        };
        let (mut verdict, rule) = self.access.decide_linked(
            resolution.client.map(|c| c.ip()),
            request.downstream.addr.map(|d| d.ip()),
            link.identity.as_ref(),
            authority,
            path,
        );
        let unavailable = self.trust_unavailable || self.access.reads_unavailable(rule);
        let unverified_downstream = request.downstream.origin == Origin::SourceAddressFromXff
            && self.on_downstream_from_xff == OnDownstreamFromXff::Refuse;
        if unavailable || unverified_downstream {
            verdict = self.unavailable_verdict(rule);
        }
        Decision {
            client: resolution.client,
            downstream: request.downstream,
            invalid: resolution.invalid,
            verdict,
            rule,
            link,
            unavailable,
            unverified_downstream,
        }
    }

    /// The verdict of a decision that read a list naming an unavailable source with
    /// `on_unavailable: "refuse"` (docs/sources.md), or whose downstream address came from
    /// X-Forwarded-For (`on_downstream_from_xff: "refuse"`): a refusal in the deciding mode.
    pub fn unavailable_verdict(&self, rule: Option<usize>) -> Verdict {
        match rule.map_or(self.access.mode, |i| self.access.rules[i].mode) {
            Mode::Enforce => Verdict::Deny,
            Mode::DryRun => Verdict::DryRunDeny,
        }
    }

    /// The local reply of a refused request (an enforced [`Verdict::Deny`]): 503 when a list it
    /// read names an unavailable source, else the deny status and body.
    pub fn refusal(&self, decision: &Decision) -> Refusal<'_> {
        let (status, body, details) = if decision.unavailable {
            (
                503,
                "source unavailable\n",
                "client_ip_filter_source_unavailable",
            )
        } else if decision.unverified_downstream {
            let a = &self.access;
            (
                a.deny_status,
                a.deny_body.as_str(),
                "client_ip_filter_downstream_from_xff",
            )
        } else {
            let a = &self.access;
            (
                a.deny_status,
                a.deny_body.as_str(),
                "client_ip_filter_denied",
            )
        };
        Refusal {
            status,
            body,
            details,
        }
    }

    /// The header edits for an admitted request.
    pub fn header_plan<'p>(&'p self, request: &Request<'p>, decision: &Decision) -> HeaderPlan<'p> {
        let plan = self
            .forwarding
            .plan(decision.client, request.downstream.addr, request.headers);
        match decision.client {
            Some(client) if self.geo.configured => plan.with_geo(self.geo.of(client.ip())),
            _ => plan,
        }
    }

    /// The client's country and AS number (docs/geo.md), when a `geo` section is configured.
    pub fn client_geo(&self, decision: &Decision) -> Option<Geo> {
        self.geo.configured.then(|| {
            decision
                .client
                .map(|c| self.geo.of(c.ip()))
                .unwrap_or_default()
        })
    }

    /// The request headers [`Policy::decide`] and [`Policy::header_plan`] read. Given only
    /// those (as [`HeaderReads`] describes), they decide and plan exactly as with all of them.
    /// A policy that sanitises requests (see [`Forwarding::sanitises`]) reads every line, once:
    /// that one read also serves the forwarding header, `:authority` and `:path`.
    pub fn header_reads(&self) -> HeaderReads {
        if self.forwarding.sanitises() {
            return HeaderReads::AllLines;
        }
        let mut names: Vec<&str> = Vec::new();
        match self.resolver.reads() {
            None => {}
            Some((name, HeaderKind::List)) => names.push(name),
            Some((_, HeaderKind::Single)) => return HeaderReads::AllLines,
        }
        if self.forwarding.xff == XffMode::Append {
            names.push(X_FORWARDED_FOR);
        }
        if self.access.rules.iter().any(|r| !r.hosts.is_empty()) {
            names.push(":authority");
        }
        if self
            .access
            .rules
            .iter()
            .any(|r| !r.path_prefixes.is_empty())
        {
            names.push(":path");
        }
        names.dedup();
        if names.is_empty() {
            HeaderReads::Nothing
        } else {
            HeaderReads::Values(names.into_iter().map(str::to_string).collect())
        }
    }

    /// The header lines this request's decision and plan read, fetched from `source`, and no
    /// others. `reads` is [`Policy::header_reads`] (worked out once per configuration); of those,
    /// a header is fetched only when this request can depend on it: the forwarding header not
    /// from an untrusted downstream address, `:path` not when no path rule takes in the host.
    pub fn fetch_headers<S: HeaderSource>(
        &self,
        reads: &HeaderReads,
        downstream: &Downstream,
        source: &mut S,
    ) -> Result<Vec<(String, String)>, S::Error> {
        match reads {
            HeaderReads::Nothing => Ok(Vec::new()),
            HeaderReads::Values(names) => {
                let mut lines = Vec::with_capacity(names.len());
                for name in names {
                    if !self.reads_now(name, downstream, &lines) {
                        continue;
                    }
                    if let Some(value) = source.value(name)? {
                        lines.push((name.clone(), value));
                    }
                }
                Ok(lines)
            }
            HeaderReads::AllLines if self.reads_lines_now(downstream) => source.lines(),
            HeaderReads::AllLines => Ok(Vec::new()),
        }
    }

    /// Whether `name`, one of the names [`Policy::header_reads`] lists (asked in that order), is
    /// needed for a request from `downstream`, given the lines fetched so far.
    fn reads_now(&self, name: &str, downstream: &Downstream, fetched: &HeaderLines) -> bool {
        match name {
            ":authority" => true,
            ":path" => {
                let authority = fetched.iter().find(|(k, _)| k == ":authority");
                self.access
                    .reads_path(authority.map_or("", |(_, v)| v.as_str()))
            }
            _ => {
                (name == X_FORWARDED_FOR && self.forwarding.xff == XffMode::Append)
                    || (self
                        .resolver
                        .reads()
                        .is_some_and(|(header, _)| header == name)
                        && self.resolver.reads_header_from(downstream.addr))
            }
        }
    }

    /// With [`HeaderReads::AllLines`]: whether a request from `downstream` needs any line.
    fn reads_lines_now(&self, downstream: &Downstream) -> bool {
        self.forwarding.sanitises()
            || self.resolver.reads_header_from(downstream.addr)
            || self.forwarding.xff == XffMode::Append
            || !self.access.rules.is_empty()
    }

    /// The rate-limit key of a decided request: None without a `rate_limit` section, and for a
    /// refused request (it never reaches a limiter). A dry-run refusal goes on, and is keyed.
    #[inline]
    pub fn rate_limit_key(&self, decision: &Decision) -> Option<Keying> {
        let rate_limit = self.rate_limit.as_ref()?;
        if decision.verdict == Verdict::Deny {
            return None;
        }
        let client = decision.client.map(|c| c.ip());
        Some(rate_limit.key(client, decision.link.identity.as_ref()))
    }

    /// The name of the rule that decided, if any.
    pub fn rule_name(&self, decision: &Decision) -> Option<&str> {
        decision.rule.map(|i| self.access.rules[i].name.as_str())
    }
}

#[cfg(test)]
mod tests;
