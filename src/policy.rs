//! The compiled policy and the per-request decision: the whole filter, minus the host calls.
//! The proxy-wasm adapter reads the downstream address and the headers, asks for a [`Decision`],
//! and applies it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::access::{Access, Mode, Verdict};
use crate::addr::{parse_socket_addr_bytes, ClientAddr};
use crate::chain::{HeaderKind, HeaderLines};
use crate::filter_type::FilterType;
use crate::forward::{Forwarding, HeaderOp, HeaderPlan, XffMode, X_FORWARDED_FOR};
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

/// A header edit the host refused, which refuses the request ([`Refusal::EDIT_FAILED`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditFailed {
    /// The edit and the host's status, for the warning.
    pub detail: String,
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

    /// Applies an admitted request's header plan through `edit` (the host's header calls, in
    /// the adapter). The first edit that fails stops it: the request must then be refused
    /// with [`Refusal::EDIT_FAILED`], never forwarded half sanitised.
    pub fn sanitise<'a, E: std::fmt::Debug>(
        plan: &'a HeaderPlan<'_>,
        edit: impl FnMut(HeaderOp<'a>) -> Result<(), E>,
    ) -> Result<(), EditFailed> {
        plan.try_for_each(edit).map_err(|(op, status)| EditFailed {
            detail: match op {
                HeaderOp::Set(name, _) => format!("set {name}: {status:?}"),
                HeaderOp::Remove(name) => format!("remove {name}: {status:?}"),
            },
        })
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

    #[test]
    fn a_sanitising_configuration_reads_every_line_once_and_one_that_does_not_reads_none() {
        // The default writes x-real-ip and strips forward.strip: every line is read, once, to
        // find the spellings to remove (the same read serves every other header).
        let (policy, _) = parse(b"").unwrap();
        assert_eq!(policy.header_reads(), HeaderReads::AllLines);
        let (policy, _) = parse(
            br#"{"access": {"allow": ["10.0.0.0/8"]},
                 "forward": {"x_forwarded_for": "replace", "headers": [], "strip": []}}"#,
        )
        .unwrap();
        assert_eq!(policy.header_reads(), HeaderReads::Nothing);
    }

    #[test]
    fn header_reads_name_what_the_configuration_uses() {
        // Without sanitising (no header written, none stripped), only what the decision needs.
        const QUIET: &str = r#""headers": [], "strip": []"#;
        let reads = |json: &str| parse(json.as_bytes()).unwrap().0.header_reads();
        let values =
            |names: &[&str]| HeaderReads::Values(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            reads(&format!(
                r#"{{"client_ip": {{"trusted_hops": 1}}, "forward": {{{QUIET}}}}}"#
            )),
            values(&["x-forwarded-for"])
        );
        assert_eq!(
            reads(&format!(
                r#"{{"client_ip": {{"trusted_proxies": ["10.0.0.0/8"]}},
                    "forward": {{{QUIET}, "x_forwarded_for": "append"}}}}"#
            )),
            values(&["x-forwarded-for"])
        );
        assert_eq!(
            reads(&format!(
                r#"{{"access": {{"rules": [{{"name": "a", "hosts": ["a.example"]}},
                    {{"name": "b", "path_prefixes": ["/b"]}}]}}, "forward": {{{QUIET}}}}}"#
            )),
            values(&[":authority", ":path"])
        );
        assert_eq!(
            reads(&format!(
                r#"{{"client_ip": {{"trusted_hops": 1, "header": "X-Real-IP"}}, "forward": {{{QUIET}}}}}"#
            )),
            HeaderReads::AllLines
        );
        // Sanitising: every line, whatever else is configured.
        assert_eq!(
            reads(r#"{"client_ip": {"trusted_hops": 1}}"#),
            HeaderReads::AllLines
        );
        assert_eq!(
            reads(r#"{"forward": {"headers": [], "strip": ["forwarded"]}}"#),
            HeaderReads::AllLines
        );
    }

    /// The adapter fetches only [`Policy::header_reads`]; with only those, every decision and
    /// header plan must be what all the headers give. Header sets are as Envoy presents them:
    /// X-Forwarded-For lines already joined into one (an inline header), other names repeated.
    #[test]
    fn header_reads_are_enough_to_decide_and_plan() {
        let configs = [
            "",
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "access": {"allow": ["203.0.113.0/24"]}}"#,
            r#"{"client_ip": {"trusted_hops": 2, "on_invalid": "downstream"}, "forward": {"x_forwarded_for": "append", "port_header": "x-client-port"}}"#,
            r#"{"forward": {"x_forwarded_for": "append"}}"#,
            r#"{"forward": {"x_forwarded_for": "replace", "headers": ["x-real-ip", "x-client-ip"]}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "header": "x-real-ip"}, "access": {"allow": ["203.0.113.0/24"]}}"#,
            r#"{"client_ip": {"trusted_hops": 1, "header": "cf-connecting-ip"}}"#,
            r#"{"access": {"allow": ["10.0.0.0/8"], "match": "downstream",
                "rules": [{"name": "admin", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"], "allow": ["203.0.113.5"]},
                          {"name": "api", "path_prefixes": ["/api"], "deny": ["10.1.2.3"], "mode": "dry_run"},
                          {"name": "any", "hosts": ["*.example.com"]}]}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}, "forward": {"headers": [], "strip": [], "x_forwarded_for": "append"}}"#,
            r#"{"client_ip": {"trusted_hops": 1}, "forward": {"headers": [], "strip": []},
                "access": {"rules": [{"name": "b", "hosts": ["admin.example.com"], "path_prefixes": ["/admin"], "path_case": "insensitive", "allow": ["10.0.0.0/8"]}]}}"#,
        ];
        let requests: [&[(&str, &str)]; 8] = [
            &[],
            &[
                (":authority", "admin.example.com"),
                (":path", "/admin/x"),
                ("x-forwarded-for", "203.0.113.5, 10.9.9.9"),
            ],
            &[
                (":authority", "www.example.com:8080"),
                (":path", "/api?q=1"),
                ("x-forwarded-for", "6.6.6.6,203.0.113.5:4000, 10.1.2.3"),
            ],
            &[
                ("x-forwarded-for", "garbage, 10.0.0.1"),
                ("x-real-ip", "203.0.113.9"),
                ("cf-connecting-ip", "203.0.113.8"),
            ],
            &[
                ("x-real-ip", "203.0.113.9"),
                ("x-real-ip", "203.0.113.10"),
                ("cf-connecting-ip", "[2001:db8::1]:443"),
            ],
            &[
                (":path", "/admin"),
                ("x-forwarded-for", "10.1.2.3"),
                ("x-client-port", "1"),
            ],
            &[
                ("X-Forwarded-For", "203.0.113.5"),
                (":authority", "ADMIN.example.com."),
                (":path", "/admin"),
            ],
            &[
                (":authority", "admin.example.com:x"),
                (":path", "/x/..;/Admin"),
                ("x_real_ip", "203.0.113.9"),
                ("forwarded", "for=203.0.113.9"),
                ("x_forwarded_for", "203.0.113.9"),
            ],
        ];
        let downstreams = ["10.1.2.3:5000", "203.0.113.5:6000", "[2001:db8::1]:7"];
        for config in configs {
            let (policy, _) = parse(config.as_bytes()).unwrap();
            let reads = policy.header_reads();
            for lines in requests {
                let all = h(lines);
                for ds in downstreams {
                    let downstream = Downstream::from_filter_state(ds);
                    // What the adapter fetches for this request.
                    let fetched =
                        match policy.fetch_headers(&reads, &downstream, &mut InMemory(&all)) {
                            Ok(lines) => lines,
                            Err(never) => match never {},
                        };
                    let full = Request {
                        downstream,
                        headers: &all,
                    };
                    let part = Request {
                        downstream,
                        headers: &fetched,
                    };
                    let (a, b) = (policy.decide(&full), policy.decide(&part));
                    assert_eq!(a, b, "config {config}, headers {lines:?}, downstream {ds}");
                    assert_eq!(
                        policy.header_plan(&full, &a).to_vec(),
                        policy.header_plan(&part, &b).to_vec(),
                        "config {config}, headers {lines:?}, downstream {ds}"
                    );
                }
            }
        }
    }

    /// A header source that counts its reads: each one is a host call in the filter.
    struct Counting<'a>(InMemory<'a>, usize);

    impl HeaderSource for Counting<'_> {
        type Error = std::convert::Infallible;
        fn value(&mut self, name: &str) -> Result<Option<String>, Self::Error> {
            self.1 += 1;
            self.0.value(name)
        }
        fn lines(&mut self) -> Result<Vec<(String, String)>, Self::Error> {
            self.1 += 1;
            self.0.lines()
        }
    }

    /// Header reads and header writes per request for the configurations of `make bench`'s cases
    /// (C) and (D), with its request (tests/test_host_calls.py counts every host call of these
    /// cases in Envoy, with the `count-host-calls` build).
    #[test]
    fn host_calls_per_request_of_the_bench_cases() {
        let c = Policy::default();
        let d = parse(
            br#"{"client_ip": {"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"]},
                 "access": {"allow": ["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32"],
                            "deny": ["203.0.113.66"],
                            "rules": [{"name": "admin", "hosts": ["admin.example.com"],
                                       "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"]}]},
                 "forward": {"headers": ["x-real-ip", "x-client-ip"]}}"#,
        )
        .unwrap()
        .0;
        let wire = h(&[
            (":authority", "www.example.com"),
            (":path", "/api/v1/items?page=2"),
            ("user-agent", "wrk"),
            ("x-forwarded-for", "203.0.113.7, 10.1.2.3"),
        ]);
        let downstream = Downstream::from_filter_state("127.0.0.1:40000");
        let per_request = |p: &Policy| {
            let mut source = Counting(InMemory(&wire), 0);
            let lines = p
                .fetch_headers(&p.header_reads(), &downstream, &mut source)
                .unwrap();
            let request = Request {
                downstream,
                headers: &lines,
            };
            let decision = p.decide(&request);
            assert_eq!(decision.verdict, crate::access::Verdict::Allow);
            let mut writes = 0;
            p.header_plan(&request, &decision).for_each(|_| writes += 1);
            (source.1, writes)
        };
        assert_eq!(
            per_request(&c),
            (1, 1),
            "(C): the header lines read once, x-real-ip set"
        );
        assert_eq!(
            per_request(&d),
            (1, 2),
            "(D): the header lines read once (X-Forwarded-For and :authority among them), \
             x-real-ip and x-client-ip set"
        );
    }

    #[test]
    fn a_failed_header_edit_refuses_the_request_and_stops_the_edits() {
        let (p, _) = parse(br#"{"forward": {"headers": ["x-real-ip", "x-client-ip"]}}"#).unwrap();
        let lines = h(&[("x_real_ip", "6.6.6.6"), ("forwarded", "for=6.6.6.6")]);
        let request = Request {
            downstream: Downstream::from_filter_state("203.0.113.5:1"),
            headers: &lines,
        };
        let decision = p.decide(&request);
        let plan = p.header_plan(&request, &decision);
        // Every edit succeeds: forwarded.
        let mut done = Vec::new();
        let ok = Policy::sanitise(&plan, |op| {
            done.push(format!("{op:?}"));
            Ok::<(), &str>(())
        });
        assert_eq!(ok, Ok(()));
        assert_eq!(done.len(), 4, "{done:?}");
        // Each edit failing in turn: refused, nothing edited after it.
        for fail_at in 0..done.len() {
            let mut attempted = 0;
            let failed = Policy::sanitise(&plan, |_| {
                attempted += 1;
                if attempted == fail_at + 1 {
                    Err("InternalFailure")
                } else {
                    Ok(())
                }
            });
            assert!(failed.is_err(), "edit {fail_at}");
            assert_eq!(attempted, fail_at + 1);
        }
        let failed = Policy::sanitise(&plan, |op| match op {
            HeaderOp::Set("x-real-ip", _) => Err("BadArgument"),
            _ => Ok(()),
        });
        assert_eq!(
            failed,
            Err(EditFailed {
                detail: "set x-real-ip: \"BadArgument\"".into()
            })
        );
        assert_eq!(Refusal::EDIT_FAILED.status, 500);
    }

    #[test]
    fn a_refusal_replies_with_the_deny_status_or_503_for_an_unavailable_source() {
        let (p, _) = parse(br#"{"access": {"deny_status": 451, "deny_body": "no\n"}}"#).unwrap();
        let xff = Downstream::read(None, || Some(b"203.0.113.5:0".to_vec()));
        let d = p.decide(&Request {
            downstream: xff,
            headers: &[],
        });
        assert_eq!(
            p.refusal(&d),
            Refusal {
                status: 451,
                body: "no\n",
                details: "client_ip_filter_downstream_from_xff"
            }
        );
        let mut d2 = d;
        d2.unverified_downstream = false;
        assert_eq!(p.refusal(&d2).details, "client_ip_filter_denied");
        d2.unavailable = true;
        assert_eq!(p.refusal(&d2).status, 503);
    }

    #[test]
    fn on_downstream_from_xff_use_takes_the_address_and_dry_run_lets_it_through() {
        let xff = Downstream::read(None, || Some(b"203.0.113.5:0".to_vec()));
        let decide = |json: &str| {
            parse(json.as_bytes()).unwrap().0.decide(&Request {
                downstream: xff,
                headers: &[],
            })
        };
        let d = decide(r#"{"client_ip": {"on_downstream_from_xff": "use"}}"#);
        assert_eq!(
            (d.verdict, d.unverified_downstream),
            (Verdict::Allow, false)
        );
        assert_eq!(
            d.client.map(|c| c.ip().to_string()).as_deref(),
            Some("203.0.113.5")
        );
        let d = decide(r#"{"access": {"mode": "dry_run"}}"#);
        assert_eq!(
            (d.verdict, d.unverified_downstream),
            (Verdict::DryRunDeny, true)
        );
        let d = decide("{}");
        assert_eq!((d.verdict, d.unverified_downstream), (Verdict::Deny, true));
    }
}
