//! What a request's decision leaves besides its header plan, the same in every adapter: the
//! filter state written for access logs ([`each_fact`], in the order they are written), the
//! rate-limit key's writes ([`apply_key`]) and the debug lines ([`describe`],
//! [`describe_connection`]). Adapters
//! hand each write to their host and decide nothing about which.

use std::fmt;

use crate::access::Verdict;
use crate::forward::{EditFailed, HeaderMap, HeaderOp};
use crate::policy::{Decision, Policy};
use crate::rate_limit::Keying;

/// A filter state value the filter writes, by meaning. Envoy shows the `.wasm`'s under
/// `wasm.<key>`; the native build writes that same full name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    /// The client's address (`wasm.client_ip`).
    ClientIp,
    /// A refusal's verdict (`wasm.client_ip_decision`; absent means allowed).
    Decision,
    /// The rule that decided (`wasm.client_ip_rule`).
    Rule,
    /// The client's country code (`wasm.client_country`).
    Country,
    /// The client's AS number (`wasm.client_asn`).
    Asn,
    /// The rate-limit key (`wasm.client_ip_key`).
    Key,
}

impl Fact {
    /// The key without Envoy's `wasm.` prefix (what a proxy-wasm filter names).
    pub const fn key(self) -> &'static str {
        match self {
            Fact::ClientIp => "client_ip",
            Fact::Decision => "client_ip_decision",
            Fact::Rule => "client_ip_rule",
            Fact::Country => "client_country",
            Fact::Asn => "client_asn",
            Fact::Key => "client_ip_key",
        }
    }

    /// The full filter state name, as access logs read it (`wasm.client_ip`).
    pub const fn full_name(self) -> &'static str {
        match self {
            Fact::ClientIp => "wasm.client_ip",
            Fact::Decision => "wasm.client_ip_decision",
            Fact::Rule => "wasm.client_ip_rule",
            Fact::Country => "wasm.client_country",
            Fact::Asn => "wasm.client_asn",
            Fact::Key => "wasm.client_ip_key",
        }
    }
}

/// Hands `write` each fact of a decision, in order: the client when known (`client`, its
/// address text), the client's country and AS number (with a `geo` section, when known), the
/// decision when it is a refusal, the rule when one decided.
pub fn each_fact(
    policy: &Policy,
    decision: &Decision,
    client: Option<&str>,
    mut write: impl FnMut(Fact, &str),
) {
    if let Some(text) = client {
        write(Fact::ClientIp, text);
    }
    each_geo_fact(policy, decision, &mut write);
    if decision.verdict != Verdict::Allow {
        write(Fact::Decision, decision.verdict.as_str());
    }
    if let Some(name) = policy.rule_name(decision) {
        write(Fact::Rule, name);
    }
}

/// The client's country and AS number, when a `geo` section is configured and the databases know
/// the client (docs/geo.md).
pub fn each_geo_fact(policy: &Policy, decision: &Decision, mut write: impl FnMut(Fact, &str)) {
    let Some(geo) = policy.client_geo(decision) else {
        return;
    };
    if let Some(code) = geo.country_code() {
        write(Fact::Country, code);
    }
    if let Some(asn) = geo.asn {
        write(Fact::Asn, &asn.to_string());
    }
}

/// Where an adapter writes a decision's facts: its host's filter state. A failed write is the
/// adapter's to log; it never refuses a request.
pub trait FactSink {
    /// Writes the filter state of `fact`.
    fn write_fact(&mut self, fact: Fact, value: &str);
}

/// The rate-limit key of an admitted request, written through `host`: fact [`Fact::Key`] when
/// keyed and, when `header` is configured, its edit (set, replacing what the client sent;
/// removed for an exempt client, so that no per-client descriptor comes from a value the client
/// wrote). A failed edit is returned, for the adapter's log line: it does not refuse the request.
pub fn apply_key<H: HeaderMap + FactSink>(
    keying: &Keying,
    header: Option<&str>,
    host: &mut H,
) -> Result<(), EditFailed> {
    let text = match keying {
        Keying::Keyed(text) => Some(text.as_str()),
        Keying::Exempt => None,
    };
    if let Some(text) = text {
        host.write_fact(Fact::Key, text);
    }
    match header {
        Some(name) => HeaderOp::set_or_remove(name, text).apply(host),
        None => Ok(()),
    }
}

/// The debug line of a decision, formatted only when shown.
pub fn describe<'a>(
    policy: &'a Policy,
    decision: &'a Decision,
    client: Option<&'a str>,
) -> impl fmt::Display + 'a {
    Described {
        policy,
        decision,
        client,
    }
}

/// The debug line of a connection's decision (network mode), formatted only when shown.
pub fn describe_connection<'a>(
    policy: &'a Policy,
    decision: &'a Decision,
    client: Option<&'a str>,
    server_name: &'a str,
) -> impl fmt::Display + 'a {
    DescribedConnection {
        policy,
        decision,
        client,
        server_name,
    }
}

struct DescribedConnection<'a> {
    policy: &'a Policy,
    decision: &'a Decision,
    client: Option<&'a str>,
    server_name: &'a str,
}

impl fmt::Display for DescribedConnection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.decision;
        write!(
            f,
            "connection decision={} client={} ({:?}) sni={:?} rule={}",
            d.verdict.as_str(),
            self.client.unwrap_or("unknown"),
            d.downstream.origin,
            self.server_name,
            self.policy.rule_name(d).unwrap_or("-"),
        )
    }
}

struct Described<'a> {
    policy: &'a Policy,
    decision: &'a Decision,
    client: Option<&'a str>,
}

impl fmt::Display for Described<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.decision;
        write!(
            f,
            "decision={} client={} downstream=",
            d.verdict.as_str(),
            self.client.unwrap_or("unknown")
        )?;
        match d.downstream.addr {
            Some(addr) => write!(f, "{addr}")?,
            None => f.write_str("unknown")?,
        }
        write!(
            f,
            " ({:?}) rule={} invalid_entry={}",
            d.downstream.origin,
            self.policy.rule_name(d).unwrap_or("-"),
            d.invalid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::policy::{Downstream, Request};
    use crate::rate_limit::KeyText;
    use crate::testutil::Recorder;

    fn decide(json: &str, addr: &str) -> (Policy, Decision) {
        let (policy, _) = config::parse(json.as_bytes()).unwrap();
        let headers = Vec::new();
        let request = Request {
            downstream: Downstream::from_filter_state(addr),
            headers: &headers,
        };
        let decision = policy.decide(&request);
        (policy, decision)
    }

    fn facts(policy: &Policy, decision: &Decision, client: Option<&str>) -> Vec<(Fact, String)> {
        let mut out = Vec::new();
        each_fact(policy, decision, client, |f, v| {
            out.push((f, v.to_string()))
        });
        out
    }

    #[test]
    fn an_allowed_request_writes_only_its_client() {
        let (p, d) = decide("{}", "203.0.113.7:1");
        assert_eq!(
            facts(&p, &d, Some("203.0.113.7")),
            [(Fact::ClientIp, "203.0.113.7".to_string())]
        );
    }

    #[test]
    fn a_refusal_by_a_rule_writes_the_client_the_decision_and_the_rule_in_that_order() {
        let json = r#"{"access": {"rules": [{"name": "r", "deny": ["203.0.113.0/24"]}]}}"#;
        let (p, d) = decide(json, "203.0.113.7:1");
        let got: Vec<Fact> = facts(&p, &d, Some("203.0.113.7"))
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(got, [Fact::ClientIp, Fact::Decision, Fact::Rule]);
        assert!(describe(&p, &d, Some("203.0.113.7"))
            .to_string()
            .starts_with("decision=deny client=203.0.113.7"));
    }

    #[test]
    fn an_exempt_client_has_no_key_and_its_header_is_removed() {
        let mut host = Recorder::default();
        assert_eq!(apply_key(&Keying::Exempt, Some("x-rl"), &mut host), Ok(()));
        assert!(host.facts.is_empty());
        assert_eq!(host.edits, ["remove x-rl"]);
    }

    #[test]
    fn a_keyed_client_gets_its_key_as_fact_and_header_and_a_failed_edit_is_reported() {
        let keyed = Keying::Keyed(KeyText::network("203.0.113.7".parse().unwrap(), 32, 128));
        let mut host = Recorder::default();
        assert_eq!(apply_key(&keyed, Some("x-rl"), &mut host), Ok(()));
        assert_eq!(host.facts, [(Fact::Key, "203.0.113.7/32".to_string())]);
        assert_eq!(host.edits, ["set x-rl 203.0.113.7/32"]);
        // Without a header: the fact alone.
        let mut host = Recorder::default();
        assert_eq!(apply_key(&keyed, None, &mut host), Ok(()));
        assert_eq!((host.facts.len(), host.edits.len()), (1, 0));
        // The host refuses the edit: the fact is written, the failure names the edit.
        let mut host = Recorder::failing_at(0);
        let failed = apply_key(&keyed, Some("x-rl"), &mut host).unwrap_err();
        assert_eq!(failed.detail, "set x-rl: \"BadArgument\"");
        assert_eq!(host.facts.len(), 1);
    }

    #[test]
    fn a_connection_is_described_with_its_server_name_and_rule() {
        let json = r#"{"filter_type": "network",
            "access": {"rules": [{"name": "r", "deny": ["203.0.113.0/24"]}]}}"#;
        let (p, d) = decide(json, "203.0.113.7:1");
        assert_eq!(
            describe_connection(&p, &d, Some("203.0.113.7"), "a.example").to_string(),
            "connection decision=deny client=203.0.113.7 (FilterState) sni=\"a.example\" rule=r"
        );
        let (p, d) = decide(r#"{"filter_type": "network"}"#, "203.0.113.7:1");
        assert_eq!(
            describe_connection(&p, &d, None, "").to_string(),
            "connection decision=allow client=unknown (FilterState) sni=\"\" rule=-"
        );
    }

    #[test]
    fn full_names_are_envoys_names_of_the_wasm_keys() {
        for f in [
            Fact::ClientIp,
            Fact::Decision,
            Fact::Rule,
            Fact::Country,
            Fact::Asn,
            Fact::Key,
        ] {
            assert_eq!(f.full_name(), format!("wasm.{}", f.key()));
        }
    }
}
