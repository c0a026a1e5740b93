//! Forwarding (docs/forwarding.md): the header plan, i.e. which request headers to set or remove so that
//! the app sees the resolved client and never a value the client wrote itself.
//!
//! An app may read a header under another spelling than the one the filter writes: CGI, WSGI
//! and Rack servers fold `X_Real_IP` and `x-real-ip` into the same `HTTP_X_REAL_IP`, and Envoy
//! forwards header names with underscores by default. So besides setting its own headers, the
//! plan removes every other spelling of them (any case, `_` for `-`) and every header of
//! `forward.strip` (headers naming a client that the filter does not write), in every spelling.
//! It finds them in the request's header lines, read once (one host call serves the resolver's
//! header too); a request carrying none of them costs no edit beyond the filter's own headers.

use crate::addr::{AddrText, ClientAddr};
use crate::chain::{ends_with, HeaderLines};
use crate::source::geo::Geo;

/// The `x-forwarded-for` header name.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// What happens to `X-Forwarded-For`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XffMode {
    /// Leave it as it came (the default).
    Keep,
    /// Add the downstream address unless it is already the last entry.
    Append,
    /// Set it to the client alone; remove it when the client is unknown.
    Replace,
}

/// The default `forward.strip`: headers that name a client address, which apps and frameworks
/// read (Spring's `ForwardedHeaderFilter`, chi's `RealIP`, …) and the filter does not write.
pub const DEFAULT_STRIP: [&str; 6] = [
    "forwarded",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "x-client-ip",
    "fastly-client-ip",
];

/// The compiled `forward` section.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// Headers set to the client address (lower case).
    pub headers: Vec<String>,
    /// Header set to the client port (lower case).
    pub port_header: Option<String>,
    /// X-Forwarded-For handling.
    pub xff: XffMode,
    /// Headers removed from every request (lower case), none of them one the filter writes.
    pub strip: Vec<String>,
    /// Other headers whose other spellings are removed (lower case): the link header and the
    /// resolver's header, which the configuration adds.
    pub spelled: Vec<String>,
    /// Header set to the client's country (docs/geo.md), removed when unknown.
    pub country_header: Option<String>,
    /// Header set to the client's AS number, removed when unknown.
    pub asn_header: Option<String>,
    /// `rate_limit.header` (docs/rate-limits.md): written by the filter, so its other spellings
    /// are removed from every request, as those of `headers`.
    pub rate_limit_header: Option<String>,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            headers: vec!["x-real-ip".to_string()],
            port_header: None,
            xff: XffMode::Keep,
            strip: DEFAULT_STRIP.iter().map(|h| h.to_string()).collect(),
            spelled: Vec::new(),
            country_header: None,
            asn_header: None,
            rate_limit_header: None,
        }
    }
}

/// Whether the header name `name` folds to `canonical` (lower case, `-`) as an app may fold it:
/// ASCII case ignored, `_` read as `-`.
#[inline]
pub fn folds_to(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name.bytes().zip(canonical.bytes()).all(|(n, c)| {
            let n = n.to_ascii_lowercase();
            n == c || (n == b'_' && c == b'-')
        })
}

/// One header edit. `Set` replaces every line of the header with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Replace all lines of the header with this value.
    Set(&'a str, &'a str),
    /// Remove all lines of the header.
    Remove(&'a str),
}

impl<'a> HeaderOp<'a> {
    /// How the filter writes a header of its own: set to `value` when there is one, else
    /// removed (so a value the client wrote never passes).
    #[inline]
    pub fn set_or_remove(name: &'a str, value: Option<&'a str>) -> HeaderOp<'a> {
        match value {
            Some(value) => HeaderOp::Set(name, value),
            None => HeaderOp::Remove(name),
        }
    }

    /// Makes the edit through `headers` (the host's header calls); a failure names the edit
    /// and carries the host's status.
    #[inline]
    pub fn apply(self, headers: &mut impl HeaderMap) -> Result<(), EditFailed> {
        let result = match self {
            HeaderOp::Set(name, value) => headers.set(name, value),
            HeaderOp::Remove(name) => headers.remove(name),
        };
        result.map_err(|status| EditFailed::new(self, status))
    }
}

/// A request's headers as the host holds them, edited through its calls: what an adapter
/// implements over its host (no allocation, no decision) so that the core applies a header plan
/// ([`HeaderPlan::apply`]) or one edit ([`HeaderOp::apply`]).
pub trait HeaderMap {
    /// The host's status of a failed edit.
    type Error: std::fmt::Debug;
    /// Replaces every line of the header `name` with one line `value`.
    fn set(&mut self, name: &str, value: &str) -> Result<(), Self::Error>;
    /// Removes every line of the header `name`.
    fn remove(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Adds the line `name: value` to a request known to hold no line of `name`: then the same
    /// edit as [`HeaderMap::set`], which it is unless the host's add is cheaper (Envoy's dynamic
    /// modules: a set also searches the map for lines to replace).
    fn add_absent(&mut self, name: &str, value: &str) -> Result<(), Self::Error> {
        self.set(name, value)
    }
}

/// A header edit the host refused. In a header plan it refuses the request
/// ([`crate::policy::Refusal::EDIT_FAILED`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditFailed {
    /// The edit and the host's status (`set x-real-ip: BadArgument`), for the warning.
    pub detail: String,
}

impl EditFailed {
    /// The failure of `op` with the host's `status` (formatted only on failure).
    #[cold]
    fn new(op: HeaderOp<'_>, status: impl std::fmt::Debug) -> EditFailed {
        EditFailed {
            detail: match op {
                HeaderOp::Set(name, _) => format!("set {name}: {status:?}"),
                HeaderOp::Remove(name) => format!("remove {name}: {status:?}"),
            },
        }
    }
}

/// The header edits for one request; built without allocating except for an appended
/// X-Forwarded-For value.
#[derive(Debug)]
pub struct HeaderPlan<'p> {
    forwarding: &'p Forwarding,
    client: Option<AddrText>,
    port: Option<AddrText>,
    xff: XffEdit,
    /// Header lines to remove, by their name as sent (each once).
    removals: Vec<&'p str>,
    /// The client's country, when known.
    country: Option<[u8; 2]>,
    /// The client's AS number as text, when known and a header wants it.
    asn: Option<String>,
    /// Bit `i`: the request holds no line of client header `forwarding.headers[i]` (the first
    /// 64 only), so that [`HeaderPlan::apply`] adds it ([`HeaderMap::add_absent`]).
    absent: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum XffEdit {
    Keep,
    Remove,
    SetClient,
    Set(String),
}

impl Forwarding {
    /// Whether requests are sanitised at all: the filter writes a header or strips some. Then
    /// every request's header lines are read (all of them), to find the spellings to remove.
    pub fn sanitises(&self) -> bool {
        !self.headers.is_empty()
            || self.port_header.is_some()
            || !self.strip.is_empty()
            || self.country_header.is_some()
            || self.asn_header.is_some()
            || self.rate_limit_header.is_some()
    }

    /// The names whose other spellings are removed (lower case); the strip list's are removed
    /// in every spelling.
    fn spelled_names(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .chain(&self.port_header)
            .chain(&self.country_header)
            .chain(&self.asn_header)
            .chain(&self.spelled)
            .chain(&self.rate_limit_header)
            .map(String::as_str)
            .chain(std::iter::once(X_FORWARDED_FOR))
    }

    /// The header lines of a request to remove: a header of `strip` in any spelling, and any
    /// other spelling of the filter's own headers and of the forwarding header. `headers` must
    /// be every line of the request (see [`Forwarding::sanitises`]). No allocation when the
    /// request holds none.
    pub fn removals<'h>(&self, headers: &'h HeaderLines) -> Vec<&'h str> {
        let mut out: Vec<&'h str> = Vec::new();
        if !self.sanitises() {
            return out;
        }
        for (name, _) in headers {
            let name = name.as_str();
            if name.starts_with(':') {
                continue;
            }
            let strip = self.strip.iter().any(|s| folds_to(name, s));
            let other_spelling = || {
                self.spelled_names()
                    .any(|own| folds_to(name, own) && name != own)
            };
            if (strip || other_spelling()) && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// Plans the edits for a request whose client (when known) and downstream address are given.
    /// With [`Forwarding::sanitises`], `headers` must be every line of the request.
    pub fn plan<'p>(
        &'p self,
        client: Option<ClientAddr>,
        downstream: Option<ClientAddr>,
        headers: &'p HeaderLines,
    ) -> HeaderPlan<'p> {
        let xff = match (self.xff, client, downstream) {
            (XffMode::Keep, _, _) => XffEdit::Keep,
            (XffMode::Replace, Some(_), _) => XffEdit::SetClient,
            (XffMode::Replace, None, _) => XffEdit::Remove,
            (XffMode::Append, _, None) => XffEdit::Keep,
            (XffMode::Append, _, Some(ds)) if ends_with(headers, X_FORWARDED_FOR, ds) => {
                XffEdit::Keep
            }
            (XffMode::Append, _, Some(ds)) => XffEdit::Set(appended(headers, ds)),
        };
        HeaderPlan {
            forwarding: self,
            client: client.map(|c| c.text()),
            port: client.and_then(|c| c.port()).map(AddrText::port),
            xff,
            removals: self.removals(headers),
            country: None,
            asn: None,
            absent: self.absent_client_headers(headers),
        }
    }
}

impl Forwarding {
    /// [`HeaderPlan`]'s `absent`: the client headers (of the first 64) no line of `headers`
    /// (every line of the request) names, in any case; a name the plan may also edit as another
    /// header (X-Forwarded-For, the port, country or ASN header) or that comes twice is never
    /// absent (it is set, as every header was before).
    fn absent_client_headers(&self, headers: &HeaderLines) -> u64 {
        let mut absent = 0u64;
        for (i, name) in self.headers.iter().enumerate().take(64) {
            let other_edit = name == X_FORWARDED_FOR
                || self.headers.iter().filter(|h| *h == name).count() > 1
                || [&self.port_header, &self.country_header, &self.asn_header]
                    .into_iter()
                    .any(|h| h.as_deref() == Some(name.as_str()));
            if !other_edit && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                absent |= 1 << i;
            }
        }
        absent
    }
}

/// Every X-Forwarded-For line joined with ", ", then the downstream address.
fn appended(headers: &HeaderLines, downstream: ClientAddr) -> String {
    let mut value = String::new();
    for (_, line) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(X_FORWARDED_FOR))
    {
        let line = line.trim_matches(|c| matches!(c, ' ' | '\t' | ','));
        if !line.is_empty() {
            value.push_str(line);
            value.push_str(", ");
        }
    }
    value.push_str(downstream.text().as_str());
    value
}

impl HeaderPlan<'_> {
    /// The plan with the client's country and AS number (docs/geo.md) for their headers.
    pub fn with_geo(mut self, geo: Geo) -> Self {
        self.country = geo.country;
        if self.forwarding.asn_header.is_some() {
            self.asn = geo.asn.map(|n| n.to_string());
        }
        self
    }

    /// Calls `edit` once per header edit, in a fixed order: the removals (strip list and other
    /// spellings), the client headers, the port header, then X-Forwarded-For.
    pub fn for_each<'a>(&'a self, mut edit: impl FnMut(HeaderOp<'a>)) {
        let _ = self.try_for_each(|op| {
            edit(op);
            Ok::<(), ()>(())
        });
    }

    /// [`HeaderPlan::for_each`] with edits that may fail: stops at the first failure and
    /// returns it with its edit. A request whose plan failed must not be forwarded (it may
    /// still carry a header the client wrote).
    pub fn try_for_each<'a, E>(
        &'a self,
        mut edit: impl FnMut(HeaderOp<'a>) -> Result<(), E>,
    ) -> Result<(), (HeaderOp<'a>, E)> {
        let mut apply = |op: HeaderOp<'a>| edit(op).map_err(|e| (op, e));
        for name in &self.removals {
            apply(HeaderOp::Remove(name))?;
        }
        let client = self.client_text();
        for name in &self.forwarding.headers {
            apply(HeaderOp::set_or_remove(name, client))?;
        }
        if let Some(name) = &self.forwarding.port_header {
            apply(HeaderOp::set_or_remove(
                name,
                self.port.as_ref().map(AddrText::as_str),
            ))?;
        }
        if let Some(name) = &self.forwarding.country_header {
            let code = self
                .country
                .as_ref()
                .and_then(|c| std::str::from_utf8(c).ok());
            apply(HeaderOp::set_or_remove(name, code))?;
        }
        if let Some(name) = &self.forwarding.asn_header {
            apply(HeaderOp::set_or_remove(name, self.asn.as_deref()))?;
        }
        match (&self.xff, client) {
            (XffEdit::Keep, _) => Ok(()),
            (XffEdit::Remove, _) | (XffEdit::SetClient, None) => {
                apply(HeaderOp::Remove(X_FORWARDED_FOR))
            }
            (XffEdit::SetClient, Some(text)) => apply(HeaderOp::Set(X_FORWARDED_FOR, text)),
            (XffEdit::Set(value), _) => apply(HeaderOp::Set(X_FORWARDED_FOR, value)),
        }
    }

    /// Makes the plan's edits through `headers` (the host's header calls, in the adapter), in
    /// the order of [`HeaderPlan::for_each`]. The first edit that fails stops it: the request
    /// must then be refused with [`crate::policy::Refusal::EDIT_FAILED`], never forwarded half
    /// sanitised.
    pub fn apply(&self, headers: &mut impl HeaderMap) -> Result<(), EditFailed> {
        self.try_for_each(|op| match op {
            HeaderOp::Set(name, value) if self.is_absent(name) => headers
                .add_absent(name, value)
                .map_err(|status| EditFailed::new(op, status)),
            _ => op.apply(headers),
        })
        .map_err(|(_, failed)| failed)
    }

    /// Whether the request holds no line of client header `name` (see `absent`).
    fn is_absent(&self, name: &str) -> bool {
        self.absent != 0
            && self
                .forwarding
                .headers
                .iter()
                .position(|h| h == name)
                .is_some_and(|i| i < 64 && self.absent & (1 << i) != 0)
    }

    /// The client's address text, when known: what the client headers are set to.
    pub fn client_text(&self) -> Option<&str> {
        self.client.as_ref().map(AddrText::as_str)
    }

    /// The edits as owned pairs (tests and logs).
    pub fn to_vec(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        self.for_each(|op| {
            out.push(match op {
                HeaderOp::Set(k, v) => (k.to_string(), Some(v.to_string())),
                HeaderOp::Remove(k) => (k.to_string(), None),
            })
        });
        out
    }
}

#[cfg(test)]
mod tests {
    //! One test per rule of docs/forwarding.md, named after it.
    use super::*;
    use crate::addr::parse_socket_addr;
    use crate::testutil::headers as h;

    fn addr(s: &str) -> Option<ClientAddr> {
        Some(parse_socket_addr(s).unwrap())
    }
    fn set(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }
    fn remove(k: &str) -> (String, Option<String>) {
        (k.to_string(), None)
    }

    #[test]
    fn headers_are_set_to_the_client_when_known() {
        let f = Forwarding {
            headers: vec!["x-real-ip".into(), "x-client-ip".into()],
            ..Forwarding::default()
        };
        let plan = f.plan(addr("[2001:db8::7]:5"), addr("10.0.0.1:1"), &[]);
        assert_eq!(
            plan.to_vec(),
            vec![
                set("x-real-ip", "2001:db8::7"),
                set("x-client-ip", "2001:db8::7")
            ]
        );
    }

    #[test]
    fn headers_are_removed_when_the_client_is_unknown() {
        let f = Forwarding::default();
        assert_eq!(
            f.plan(None, addr("10.0.0.1:1"), &[]).to_vec(),
            vec![remove("x-real-ip")]
        );
    }

    #[test]
    fn port_header_is_the_client_port_or_removed() {
        let f = Forwarding {
            port_header: Some("x-client-port".into()),
            ..Forwarding::default()
        };
        assert_eq!(
            f.plan(addr("1.1.1.1:4321"), None, &[]).to_vec(),
            vec![set("x-real-ip", "1.1.1.1"), set("x-client-port", "4321")]
        );
        // A client without a port (an entry without one, or port 0): removed.
        assert_eq!(
            f.plan(addr("1.1.1.1:0"), None, &[]).to_vec(),
            vec![set("x-real-ip", "1.1.1.1"), remove("x-client-port")]
        );
        assert_eq!(
            f.plan(None, None, &[]).to_vec(),
            vec![remove("x-real-ip"), remove("x-client-port")]
        );
    }

    #[test]
    fn x_forwarded_for_keep_leaves_it_as_it_came() {
        let f = Forwarding {
            headers: vec![],
            ..Forwarding::default()
        };
        let hs = h(&[("x-forwarded-for", "6.6.6.6")]);
        assert!(f
            .plan(addr("1.1.1.1"), addr("1.1.1.1:2"), &hs)
            .to_vec()
            .is_empty());
    }

    #[test]
    fn x_forwarded_for_append_adds_the_downstream_unless_already_last() {
        let f = Forwarding {
            headers: vec![],
            xff: XffMode::Append,
            ..Forwarding::default()
        };
        let hs = h(&[
            ("x-forwarded-for", "6.6.6.6, 7.7.7.7 ,"),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(
            f.plan(addr("1.1.1.1"), addr("[::ffff:10.0.0.9]:2"), &hs)
                .to_vec(),
            vec![set(
                "x-forwarded-for",
                "6.6.6.6, 7.7.7.7, 8.8.8.8, 10.0.0.9"
            )]
        );
        assert_eq!(
            f.plan(None, addr("10.0.0.9:2"), &[]).to_vec(),
            vec![set("x-forwarded-for", "10.0.0.9")]
        );
        let hs = h(&[("x-forwarded-for", "6.6.6.6, 10.0.0.9")]);
        assert!(f.plan(None, addr("10.0.0.9:2"), &hs).to_vec().is_empty());
    }

    #[test]
    fn x_forwarded_for_replace_sets_the_client_alone_or_removes() {
        let f = Forwarding {
            headers: vec![],
            xff: XffMode::Replace,
            ..Forwarding::default()
        };
        let hs = h(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            f.plan(addr("1.1.1.1:3"), addr("10.0.0.9:2"), &hs).to_vec(),
            vec![set("x-forwarded-for", "1.1.1.1")]
        );
        assert_eq!(
            f.plan(None, addr("10.0.0.9:2"), &hs).to_vec(),
            vec![remove("x-forwarded-for")]
        );
    }

    #[test]
    fn strip_headers_are_removed_in_every_spelling() {
        let f = Forwarding::default();
        let hs = h(&[
            (":authority", "example.com"),
            ("forwarded", "for=6.6.6.6"),
            ("true_client_ip", "6.6.6.6"),
            ("CF-Connecting-IP", "6.6.6.6"),
            ("x-cluster_client-ip", "6.6.6.6"),
            ("fastly-client-ip", "6.6.6.6"),
            ("fastly-client-ip", "7.7.7.7"),
            ("x-client-ip", "6.6.6.6"),
            ("user-agent", "x"),
        ]);
        assert_eq!(
            f.plan(addr("1.1.1.1:2"), None, &hs).to_vec(),
            vec![
                remove("forwarded"),
                remove("true_client_ip"),
                remove("CF-Connecting-IP"),
                remove("x-cluster_client-ip"),
                remove("fastly-client-ip"),
                remove("x-client-ip"),
                set("x-real-ip", "1.1.1.1"),
            ]
        );
    }

    #[test]
    fn other_spellings_of_the_filters_own_headers_are_removed() {
        let f = Forwarding {
            headers: vec!["x-real-ip".into()],
            port_header: Some("x-client-port".into()),
            spelled: vec!["x-client-link".into()],
            ..Forwarding::default()
        };
        let hs = h(&[
            ("x-real-ip", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("X_Real-IP", "6.6.6.6"),
            ("x_client_port", "1"),
            ("x_client_link", "aws-vpce:vpce-1"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x_real_ipx", "6.6.6.6"),
            ("x-real-ip-extra", "6.6.6.6"),
        ]);
        assert_eq!(
            f.plan(addr("1.1.1.1:2"), None, &hs).to_vec(),
            vec![
                remove("x_real_ip"),
                remove("X_Real-IP"),
                remove("x_client_port"),
                remove("x_client_link"),
                remove("x_forwarded_for"),
                set("x-real-ip", "1.1.1.1"),
                set("x-client-port", "2"),
            ]
        );
    }

    #[test]
    fn a_request_without_such_headers_gets_only_the_filters_own_edits_without_allocating() {
        let f = Forwarding::default();
        let hs = h(&[
            (":authority", "example.com"),
            (":path", "/"),
            ("user-agent", "wrk"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        let removals = f.removals(&hs);
        assert!(removals.is_empty() && removals.capacity() == 0);
        assert_eq!(
            f.plan(addr("1.1.1.1"), None, &hs).to_vec(),
            vec![set("x-real-ip", "1.1.1.1")]
        );
        // Nothing written, nothing stripped: nothing removed either.
        let quiet = Forwarding {
            headers: vec![],
            strip: vec![],
            ..Forwarding::default()
        };
        assert!(!quiet.sanitises());
        assert!(quiet.removals(&h(&[("x_forwarded_for", "1")])).is_empty());
    }

    #[test]
    fn folding_ignores_case_and_reads_underscore_as_dash_only() {
        assert!(folds_to("X_Real_IP", "x-real-ip"));
        assert!(folds_to("x-real-ip", "x-real-ip"));
        assert!(!folds_to("x.real.ip", "x-real-ip"));
        assert!(!folds_to("x-real-i", "x-real-ip"));
        assert!(!folds_to("x-real-ip", "x_real_ip"));
    }

    #[test]
    fn a_failing_edit_stops_the_plan_and_is_returned() {
        let f = Forwarding::default();
        let hs = h(&[("forwarded", "x")]);
        let plan = f.plan(addr("1.1.1.1"), None, &hs);
        let mut seen = 0;
        let r = plan.try_for_each(|op| {
            seen += 1;
            match op {
                HeaderOp::Remove("forwarded") => Err(7),
                _ => Ok(()),
            }
        });
        assert_eq!(r, Err((HeaderOp::Remove("forwarded"), 7)));
        assert_eq!(seen, 1);
    }

    /// Edits as a host sees them, telling an add from a set.
    #[derive(Default)]
    struct Host(Vec<String>);

    impl HeaderMap for Host {
        type Error = ();
        fn set(&mut self, name: &str, value: &str) -> Result<(), ()> {
            self.0.push(format!("set {name} {value}"));
            Ok(())
        }
        fn remove(&mut self, name: &str) -> Result<(), ()> {
            self.0.push(format!("remove {name}"));
            Ok(())
        }
        fn add_absent(&mut self, name: &str, value: &str) -> Result<(), ()> {
            self.0.push(format!("add {name} {value}"));
            Ok(())
        }
    }

    fn applied(f: &Forwarding, headers: &HeaderLines) -> Vec<String> {
        let mut host = Host::default();
        f.plan(addr("1.1.1.1:4321"), addr("10.0.0.1:1"), headers)
            .apply(&mut host)
            .unwrap();
        host.0
    }

    #[test]
    fn a_client_header_the_request_lacks_is_added_and_one_it_has_in_any_case_is_set() {
        let f = Forwarding {
            headers: vec!["x-real-ip".into(), "x-client-ip".into()],
            strip: Vec::new(),
            ..Forwarding::default()
        };
        assert_eq!(
            applied(&f, &h(&[("x-client-ip", "6.6.6.6"), ("ua", "x")])),
            ["add x-real-ip 1.1.1.1", "set x-client-ip 1.1.1.1"]
        );
        // A line in another case is removed (another spelling) and the header then set.
        assert_eq!(
            applied(&f, &h(&[("X-Client-IP", "6.6.6.6")])),
            [
                "remove X-Client-IP",
                "add x-real-ip 1.1.1.1",
                "set x-client-ip 1.1.1.1"
            ]
        );
        // Another spelling is removed first; the header itself is then absent, and added.
        assert_eq!(
            applied(
                &f,
                &h(&[("x_real_ip", "6.6.6.6"), ("x-client-ip", "6.6.6.6")])
            ),
            [
                "remove x_real_ip",
                "add x-real-ip 1.1.1.1",
                "set x-client-ip 1.1.1.1"
            ]
        );
    }

    #[test]
    fn a_client_header_the_plan_also_edits_otherwise_or_twice_is_set_never_added() {
        let f = Forwarding {
            headers: vec![
                "x-real-ip".into(),
                "x-real-ip".into(),
                X_FORWARDED_FOR.into(),
                "x-client-port".into(),
            ],
            port_header: Some("x-client-port".into()),
            xff: XffMode::Replace,
            ..Forwarding::default()
        };
        assert_eq!(
            applied(&f, &[]),
            [
                "set x-real-ip 1.1.1.1",
                "set x-real-ip 1.1.1.1",
                "set x-forwarded-for 1.1.1.1",
                "set x-client-port 1.1.1.1",
                "set x-client-port 4321",
                "set x-forwarded-for 1.1.1.1"
            ]
        );
    }
}
