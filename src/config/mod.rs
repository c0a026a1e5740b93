//! The JSON configuration (docs/configuration.md), parsed and validated once into an immutable [`Policy`].
//! Every error names the key path the user wrote and the value found there, e.g.
//! `access.allow[2]: "10.0.0.300/8" is not an IP address or CIDR`.
//!
//! The document is walked as a `serde_json::Value` rather than derived into structs so that each
//! error can carry its full key path; the walk compiles straight into the policy's types.

use std::fmt;

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::access::Lists;
use crate::bind::{GeoPlan, SourcePlan};
use crate::filter_type::FilterType;
use crate::identity::{EntryError, Identity, IdentitySet, Kinds, LinkLists};
use crate::ipset::{parse_net, IpSet, IpSetBuilder};
use crate::policy::Policy;

mod access;
mod client_ip;
mod forward;
mod geo;
#[cfg(test)]
mod geo_tests;
mod lists;
mod network;
mod rate_limit;
mod sources;

/// A configuration the filter refuses, with the key path it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path as the user wrote it (`access.rules[0].name`), or `configuration`.
    pub path: String,
    /// What is wrong, quoting the value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration accepted with a remark worth a warning log (a CIDR with host bits set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning(pub String);

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How many host-bits warnings are listed; the others are only counted, in one last warning, so
/// that a list of a million sloppy CIDRs makes a few log lines and holds no million strings.
pub const WARNINGS_LISTED: usize = 10;

/// Host-bits warnings as they are found: the first [`WARNINGS_LISTED`] in order, then a count.
#[derive(Debug, Default)]
struct Warnings {
    listed: Vec<ConfigWarning>,
    unlisted: usize,
}

impl Warnings {
    /// A CIDR with host bits set; `message` is only formatted when it will be listed.
    fn host_bits(&mut self, message: impl FnOnce() -> String) {
        if self.listed.len() < WARNINGS_LISTED {
            self.listed.push(ConfigWarning(message()));
        } else {
            self.unlisted += 1;
        }
    }

    /// Appends warnings found elsewhere (a list read with the document), keeping the order.
    fn append(&mut self, other: Warnings) {
        for warning in other.listed {
            self.host_bits(|| warning.0);
        }
        self.unlisted += other.unlisted;
    }

    fn into_vec(self) -> Vec<ConfigWarning> {
        let mut out = self.listed;
        if self.unlisted > 0 {
            out.push(ConfigWarning(format!(
                "{} more CIDRs have host bits set (not listed); each is used as its network",
                self.unlisted
            )));
        }
        out
    }
}

/// Parses and compiles a configuration. Empty (or only whitespace) means all defaults.
/// Lists naming sources hold only their configured entries here: see [`parse_sourced`].
pub fn parse(bytes: &[u8]) -> Result<(Policy, Vec<ConfigWarning>), ConfigError> {
    parse_sourced(bytes).map(|(policy, _, warnings)| (policy, warnings))
}

/// Parses and compiles a configuration into a template policy (each list with its configured
/// entries) and the plan of its sources (docs/sources.md), which `bind::bind` combines.
pub fn parse_sourced(
    bytes: &[u8],
) -> Result<(Policy, SourcePlan, Vec<ConfigWarning>), ConfigError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Policy::default(), SourcePlan::default(), Vec::new()));
    }
    // The IP lists are compiled while the document is read (see `lists`); the rest is a `Value`.
    let mut walk = Walk::default();
    let doc = lists::read(bytes, &mut walk.read_lists).map_err(|e| ConfigError {
        path: "configuration".into(),
        message: format!("not valid JSON ({e})"),
    })?;
    let policy = walk.policy(&doc)?;
    let defined = match object(&doc, "", TOP_KEYS)?.get("sources") {
        Some(v) if !v.is_null() => sources::sources(v, "sources")?,
        _ => Vec::new(),
    };
    let geo = match object(&doc, "", TOP_KEYS)?.get("geo") {
        Some(v) if !v.is_null() => geo::geo(v, "geo", &defined)?,
        _ => GeoPlan::default(),
    };
    let mut refs = std::mem::take(&mut walk.read_lists.source_refs);
    refs.append(&mut walk.source_refs);
    let plan = sources::plan(defined, &refs, geo)?;
    for (i, source) in plan.sources.iter().enumerate() {
        if !plan.is_used(i) {
            walk.warnings.listed.push(ConfigWarning(format!(
                "sources.{}: no list names \"source:{}\"; it is not fetched",
                source.name, source.name
            )));
        }
    }
    Ok((policy, plan, walk.warnings.into_vec()))
}

const TOP_KEYS: &[&str] = &[
    "client_ip",
    "access",
    "forward",
    "sources",
    "geo",
    "filter_type",
    "rate_limit",
];
/// The one list that may not hold identity entries (docs/private-link.md).
const TRUSTED_PROXIES: &str = "client_ip.trusted_proxies";

/// The largest quoted value in an error message, in characters.
const SHOWN_VALUE_MAX: usize = 80;

#[derive(Default)]
struct Walk {
    warnings: Warnings,
    /// The IP lists compiled while the document was read, by key path.
    read_lists: lists::ReadLists,
    /// `"source:<name>"` entries of lists not read with the document.
    source_refs: Vec<sources::SourceRef>,
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: if path.is_empty() {
            "configuration".into()
        } else {
            path.into()
        },
        message: message.into(),
    }
}

/// A value as JSON text, shortened for a log line.
fn show(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SHOWN_VALUE_MAX {
        return text;
    }
    let mut short: String = text.chars().take(SHOWN_VALUE_MAX).collect();
    short.push('…');
    short
}

fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// An object's members, after checking every key is known. `null` counts as absent everywhere.
fn object<'v>(
    value: &'v Value,
    path: &str,
    known: &[&str],
) -> Result<&'v Map<String, Value>, ConfigError> {
    let map = value
        .as_object()
        .ok_or_else(|| err(path, format!("{} is not an object", show(value))))?;
    if let Some(key) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(err(
            &key_path(path, &shown_key(key)),
            format!("unknown key; expected one of: {}", known.join(", ")),
        ));
    }
    Ok(map)
}

/// An unknown key as it goes into a key path: as written when it is short printable ASCII, else
/// quoted and shortened like a value, so that the error stays one log line (a key may hold a
/// line break).
fn shown_key(key: &str) -> String {
    if key.len() <= SHOWN_VALUE_MAX && key.bytes().all(|b| b.is_ascii_graphic()) {
        key.to_string()
    } else {
        show(&Value::String(key.to_string()))
    }
}

fn member<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn string<'v>(value: &'v Value, path: &str) -> Result<&'v str, ConfigError> {
    value
        .as_str()
        .ok_or_else(|| err(path, format!("{} is not a string", show(value))))
}

fn array<'v>(value: &'v Value, path: &str) -> Result<&'v Vec<Value>, ConfigError> {
    value
        .as_array()
        .ok_or_else(|| err(path, format!("{} is not a list", show(value))))
}

/// An integer, also when written as a whole float (`403.0`): Istio hands a WasmPlugin's
/// `pluginConfig` over as JSON made from a protobuf Struct, where every number is a double.
fn integer(value: &Value, path: &str) -> Result<i64, ConfigError> {
    let not_integer = || err(path, format!("{} is not an integer", show(value)));
    if let Some(i) = value.as_i64() {
        return Ok(i);
    }
    match value.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        _ => Err(not_integer()),
    }
}

fn one_of<T: Copy>(value: &Value, path: &str, choices: &[(&str, T)]) -> Result<T, ConfigError> {
    let text = string(value, path)?;
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            err(
                path,
                format!("{} is not one of {}", show(value), names.join(", ")),
            )
        })
}

/// An HTTP header name (an RFC 9110 token), lower-cased. Pseudo-headers are not tokens.
fn header_name(value: &Value, path: &str) -> Result<String, ConfigError> {
    let name = string(value, path)?;
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(err(
            path,
            format!("{} is not a valid HTTP header name", show(value)),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// One entry of an IP list: an address or CIDR (and whether it had host bits set), or an
/// identity (docs/private-link.md).
enum ListEntry {
    Net(IpNet, bool),
    Identity(Identity),
}

/// Parses a list entry of the list at `list_path`; the error message (after the key path) names
/// the value. Identity entries are refused in `client_ip.trusted_proxies`.
fn list_entry(text: &str, list_path: &str) -> Result<ListEntry, String> {
    if let Some((net, had_host_bits)) = parse_net(text) {
        return Ok(ListEntry::Net(net, had_host_bits));
    }
    let shown = || show(&Value::String(text.to_owned()));
    match Identity::parse_entry(text) {
        Ok(_) if list_path == TRUSTED_PROXIES => Err(format!(
            "{} is an identity entry; {TRUSTED_PROXIES} holds only addresses and CIDRs",
            shown()
        )),
        Ok(id) => Ok(ListEntry::Identity(id)),
        Err(e @ EntryError::Malformed(_)) => Err(format!("{} {e}", shown())),
        Err(EntryError::NotAnIdentity) => Err(format!("{} is not an IP address or CIDR", shown())),
    }
}

/// The identity kinds a policy reads per request: those its lists hold, all with a link header.
fn link_kinds(policy: &Policy) -> Kinds {
    if policy.link.header.is_some() {
        return Kinds::ALL;
    }
    let access = &policy.access;
    let rate_limit = policy
        .rate_limit
        .as_ref()
        .map_or(Kinds::default(), |r| r.link_kinds());
    std::iter::once(&access.lists)
        .chain(access.rules.iter().map(|r| &r.lists))
        .fold(rate_limit, |k, lists| k.union(lists.links().kinds()))
}

impl Walk {
    fn policy(&mut self, doc: &Value) -> Result<Policy, ConfigError> {
        let top = object(doc, "", TOP_KEYS)?;
        let mut policy = Policy::default();
        if let Some(v) = member(top, "filter_type") {
            policy.filter_type = one_of(
                v,
                "filter_type",
                &[("http", FilterType::Http), ("network", FilterType::Network)],
            )?;
        }
        if policy.filter_type == FilterType::Network {
            network::check(top)?;
        }
        if let Some(section) = member(top, "client_ip") {
            let client_ip = self.client_ip(section, "client_ip")?;
            policy.resolver = client_ip.resolver;
            policy.on_downstream_from_xff = client_ip.on_downstream_from_xff;
            if let Some(key) = client_ip.filter_state {
                policy.downstream_filter_state = key;
            }
        }
        if let Some(section) = member(top, "access") {
            policy.access = self.access(section, "access")?;
        }
        if let Some(section) = member(top, "forward") {
            policy.forwarding = self.forward(section, "forward")?;
            policy.link.header = forward::link_header(section, "forward", &policy.forwarding)?;
            policy.forwarding.strip = forward::strip(
                section,
                "forward",
                &policy.forwarding,
                policy.link.header.as_deref(),
            )?;
        }
        // Other spellings of the link header and of the forwarding header read are removed too.
        let read = policy.resolver.header().to_string();
        policy.forwarding.spelled = policy.link.header.iter().cloned().chain([read]).collect();
        if let Some(section) = member(top, "rate_limit") {
            let rl = self.rate_limit(section, "rate_limit", &policy.forwarding, &policy.link)?;
            policy.rate_limit = Some(rl);
        }
        policy.link.kinds = link_kinds(&policy);
        Ok(policy)
    }

    fn lists(&mut self, map: &Map<String, Value>, path: &str) -> Result<Lists, ConfigError> {
        let (allow, allow_ids) = match member(map, "allow") {
            Some(v) => self.ip_set(v, &key_path(path, "allow"))?,
            None => (IpSet::empty(), IdentitySet::default()),
        };
        let (deny, deny_ids) = match member(map, "deny") {
            Some(v) => self.ip_set(v, &key_path(path, "deny"))?,
            None => (IpSet::empty(), IdentitySet::default()),
        };
        Ok(Lists::new(allow, deny).with_links(LinkLists {
            allow: allow_ids,
            deny: deny_ids,
        }))
    }

    /// A list's addresses and CIDRs, and its identity entries (none in `trusted_proxies`).
    fn ip_set(&mut self, value: &Value, path: &str) -> Result<(IpSet, IdentitySet), ConfigError> {
        let list = array(value, path)?;
        // A list read with the document left an empty array here.
        if list.is_empty() {
            if let Some(read) = self.read_lists.take(path, &mut self.warnings) {
                return read;
            }
        }
        let mut nets = IpSetBuilder::default();
        let mut identities = Vec::new();
        for (i, item) in list.iter().enumerate() {
            if let Some(r) = item
                .as_str()
                .and_then(|t| sources::SourceRef::of(path, i, t))
            {
                self.source_refs.push(r);
                continue;
            }
            match self.entry(item, path, i)? {
                ListEntry::Net(net, _) => nets.push(net),
                ListEntry::Identity(id) => identities.push(id),
            }
        }
        Ok((nets.build(), IdentitySet::from_identities(identities)))
    }

    fn entry(&mut self, item: &Value, list_path: &str, i: usize) -> Result<ListEntry, ConfigError> {
        let Some(text) = item.as_str() else {
            return Err(err(
                &format!("{list_path}[{i}]"),
                format!("{} is not an IP address or CIDR", show(item)),
            ));
        };
        let entry =
            list_entry(text, list_path).map_err(|m| err(&format!("{list_path}[{i}]"), m))?;
        if let ListEntry::Net(net, true) = entry {
            self.warnings.host_bits(|| {
                format!("{list_path}[{i}]: \"{text}\" has host bits set; using {net}")
            });
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    //! One test per error of docs/errors.md, plus the defaults.
    use super::*;
    use crate::access::{MatchOn, Mode, Verdict};
    use crate::forward::XffMode;

    use crate::testutil::config_error as error;

    #[test]
    fn empty_or_absent_configuration_means_all_defaults() {
        for doc in [
            "",
            "  \n",
            "{}",
            "{\"client_ip\": {}, \"access\": {}, \"forward\": {}}",
            "{\"access\": null}",
        ] {
            let (p, w) = parse(doc.as_bytes()).unwrap();
            assert!(w.is_empty());
            assert_eq!(p.downstream_filter_state, "client_ip.downstream_address");
            assert_eq!(p.resolver.header(), "x-forwarded-for");
            assert_eq!(p.forwarding.headers, vec!["x-real-ip".to_string()]);
            assert_eq!(p.forwarding.port_header, None);
            assert_eq!(p.forwarding.xff, XffMode::Keep);
            assert_eq!(p.access.deny_status, 403);
            assert_eq!(p.access.deny_body, "access denied\n");
            assert_eq!(p.access.mode, Mode::Enforce);
            assert_eq!(p.access.match_on, MatchOn::Client);
        }
    }

    #[test]
    fn the_spec_example_configuration_parses() {
        let doc = r#"{
          "client_ip": { "downstream_filter_state": "client_ip.downstream_address",
            "trusted_proxies": ["10.0.0.0/8", "2001:db8:ffff::/48"],
            "header": "X-Forwarded-For", "on_invalid": "unknown" },
          "access": { "mode": "enforce", "match": "client",
            "allow": ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"], "deny": ["203.0.113.66"],
            "deny_status": 403, "deny_body": "access denied\n",
            "rules": [ { "name": "admin", "hosts": ["admin.example.com", "*.internal.example.com"],
              "path_prefixes": ["/admin"], "allow": ["10.20.0.0/16"], "deny": [], "mode": "enforce" } ] },
          "forward": { "headers": ["X-Real-IP"], "port_header": "x-client-port", "x_forwarded_for": "keep" }
        }"#;
        let (p, _) = parse(doc.as_bytes()).unwrap();
        assert_eq!(p.access.rules.len(), 1);
        assert_eq!(p.forwarding.headers, vec!["x-real-ip".to_string()]);
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            p.access.decide(ip("203.0.113.66"), None, "h", "/").0,
            Verdict::Deny
        );
        assert_eq!(
            p.access.decide(ip("198.51.100.7"), None, "h", "/").0,
            Verdict::Allow
        );
        assert_eq!(
            p.access
                .decide(ip("203.0.113.1"), None, "x.internal.example.com", "/admin/")
                .0,
            Verdict::Deny
        );
    }

    #[test]
    fn bad_json_is_refused() {
        assert!(error("{\"access\": ").starts_with("configuration: not valid JSON"));
        assert_eq!(error("[]"), "configuration: [] is not an object");
    }

    #[test]
    fn unknown_key_is_refused_with_its_path() {
        assert_eq!(
            error(r#"{"acess": {}}"#),
            "acess: unknown key; expected one of: client_ip, access, forward, sources, geo, filter_type, rate_limit"
        );
        assert!(
            error(r#"{"access": {"rules": [{"name": "a", "paths": []}]}}"#)
                .starts_with("access.rules[0].paths: unknown key")
        );
        // A key with a line break (or a very long one) is quoted: the error stays one log line.
        assert_eq!(
            error("{\"forward\": {\"a\\nb\": 1}}"),
            "forward.\"a\\nb\": unknown key; expected one of: headers, port_header, x_forwarded_for, link_header, strip, country_header, asn_header"
        );
    }

    #[test]
    fn value_of_the_wrong_type_is_refused() {
        assert_eq!(
            error(r#"{"access": {"allow": "10.0.0.0/8"}}"#),
            "access.allow: \"10.0.0.0/8\" is not a list"
        );
        assert_eq!(
            error(r#"{"access": {"deny_status": "403"}}"#),
            "access.deny_status: \"403\" is not an integer"
        );
        assert_eq!(error(r#"{"forward": []}"#), "forward: [] is not an object");
        assert_eq!(
            error(r#"{"access": {"deny_body": 7}}"#),
            "access.deny_body: 7 is not a string"
        );
    }

    #[test]
    fn bad_address_or_cidr_is_refused() {
        assert_eq!(
            error(r#"{"access": {"allow": ["10.0.0.0/8", "::1", "10.0.0.300/8"]}}"#),
            "access.allow[2]: \"10.0.0.300/8\" is not an IP address or CIDR"
        );
        for bad in [
            "10.0.0.0/33",
            "2001:db8::/129",
            "010.0.0.1",
            " 10.0.0.1",
            "example.com",
            "10.0.0.0/",
            "fe80::1%eth0",
        ] {
            let e = error(&format!(
                r#"{{"client_ip": {{"trusted_proxies": ["{bad}"]}}}}"#
            ));
            assert!(e.starts_with("client_ip.trusted_proxies[0]: "), "{e}");
        }
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "a", "deny": [7]}]}}"#),
            "access.rules[0].deny[0]: 7 is not an IP address or CIDR"
        );
    }

    #[test]
    fn unknown_enum_value_is_refused() {
        assert_eq!(
            error(r#"{"access": {"mode": "enforcing"}}"#),
            "access.mode: \"enforcing\" is not one of \"enforce\", \"dry_run\""
        );
        assert!(error(r#"{"access": {"match": "peer"}}"#).starts_with("access.match: \"peer\""));
        assert!(error(r#"{"client_ip": {"on_invalid": "drop"}}"#)
            .starts_with("client_ip.on_invalid: \"drop\""));
        assert!(error(r#"{"forward": {"x_forwarded_for": "set"}}"#)
            .starts_with("forward.x_forwarded_for: \"set\""));
    }

    #[test]
    fn host_bits_warnings_are_listed_up_to_ten_then_counted() {
        // 25 sloppy CIDRs across two lists (one read with the document, one inside a rule).
        let sloppy = |n: usize, base: u8| {
            (0..n)
                .map(|i| format!("\"10.{base}.{i}.1/24\""))
                .collect::<Vec<_>>()
                .join(",")
        };
        let json = format!(
            r#"{{"access": {{"allow": [{}], "rules": [{{"name": "r", "deny": [{}]}}]}}}}"#,
            sloppy(15, 1),
            sloppy(10, 2)
        );
        let (_, w) = parse(json.as_bytes()).unwrap();
        assert_eq!(w.len(), WARNINGS_LISTED + 1, "{w:?}");
        assert_eq!(
            w[0].0,
            "access.allow[0]: \"10.1.0.1/24\" has host bits set; using 10.1.0.0/24"
        );
        assert!(w[9].0.starts_with("access.allow[9]:"), "{w:?}");
        assert_eq!(
            w[10].0,
            "15 more CIDRs have host bits set (not listed); each is used as its network"
        );
        let (_, w) = parse_whole_tree(json.as_bytes()).unwrap();
        assert_eq!(w.len(), WARNINGS_LISTED + 1);
        assert!(w[10].0.starts_with("15 more"));
    }

    #[test]
    fn cidr_with_host_bits_is_accepted_as_its_network_with_a_warning() {
        let (p, w) = parse(br#"{"access": {"allow": ["10.1.2.3/8"]}}"#).unwrap();
        assert_eq!(
            w,
            vec![ConfigWarning(
                "access.allow[0]: \"10.1.2.3/8\" has host bits set; using 10.0.0.0/8".into()
            )]
        );
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(
            p.access.decide(ip("10.200.0.1"), None, "h", "/").0,
            Verdict::Allow
        );
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(500);
        let e = error(&format!(r#"{{"access": {{"allow": ["{long}"]}}}}"#));
        assert!(e.len() < 150, "{e}");
        assert!(e.ends_with("… is not an IP address or CIDR"));
    }

    /// The configuration as it was read before the lists were streamed: a whole `Value` tree,
    /// every list walked entry by entry.
    fn parse_whole_tree(bytes: &[u8]) -> Result<(Policy, Vec<ConfigWarning>), ConfigError> {
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| ConfigError {
            path: "configuration".into(),
            message: format!("not valid JSON ({e})"),
        })?;
        let mut walk = Walk::default();
        let policy = walk.policy(&doc)?;
        Ok((policy, walk.warnings.into_vec()))
    }

    #[test]
    fn streamed_lists_give_the_same_policy_errors_and_warnings_as_the_whole_tree() {
        let docs = [
            r#"{"access": {"allow": ["10.1.2.3/8", "::ffff:10.0.0.0/104", "2001:db8::1/32", "bad", "1.2.3.4/33"]}}"#,
            r#"{"access": {"allow": ["10.1.2.3/8", 7]}}"#,
            r#"{"access": {"deny": ["10.0.0.0/8", null]}}"#,
            r#"{"access": {"deny": [true]}}"#,
            r#"{"access": {"deny": [1.5, "x"]}}"#,
            r#"{"access": {"deny": [{"a": ["1.2.3.4"]}]}}"#,
            r#"{"access": {"deny": [["1.2.3.4"], "bad"]}}"#,
            r#"{"access": {"deny": ["\u0031.2.3.4", "\"quoted\"\n"]}}"#,
            r#"{"access": {"allow": "10.0.0.0/8"}}"#,
            r#"{"access": {"allow": {"x": ["1.2.3.4"]}}}"#,
            r#"{"access": {"allow": 3, "deny": ["bad"]}}"#,
            r#"{"access": {"allow": [], "deny": []}}"#,
            r#"{"access": {"allow": null, "deny": ["1.2.3.4"]}}"#,
            r#"{"access": {"deny": ["bad"], "mode": "nope"}}"#,
            r#"{"access": {"deny": ["bad"]}, "acess": {}}"#,
            r#"{"access": {"allow": ["bad"], "allow": ["1.2.3.4/24"]}}"#,
            r#"{"access": {"allow": ["1.2.3.4/24"], "allow": ["bad"]}}"#,
            r#"{"access": {"allow": ["bad"]}, "access": {"deny": []}}"#,
            r#"{"access": {"allow": ["1.2.3.4/24"]}, "access": {"allow": "x"}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8", "300.0.0.0/8"], "downstream_filter_state": ""}}"#,
            r#"{"client_ip": {"trusted_proxies": ["bad"], "trusted_hops": 2}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.9.9.9/8", "2001:db8:ffff::1/48"]}, "access": {"allow": ["bad"]}}"#,
            r#"{"client_ip": {"trusted_proxies": "10.0.0.0/8"}}"#,
            r#"{"access": {"rules": [{"name": "a", "allow": ["10.1.0.0/8"], "deny": ["x"]}]}}"#,
            r#"{"access": {"rules": [{"name": "a", "deny": ["10.1.1.1/16"]}, {"name": "b", "allow": ["::1/64", 5]}]}}"#,
            r#"{"access": {"rules": [{"name": "a", "allow": ["bad"]}, {"name": "a"}]}}"#,
            r#"{"access": {"rules": [{"allow": ["bad"]}]}}"#,
            r#"{"access": {"rules": [{"name": "a", "allow": ["bad"]}], "rules": [{"name": "b"}]}}"#,
            r#"{"access": {"rules": [{"name": "a"}], "rules": [{"name": "b", "allow": ["1.1.1.1/8"]}]}}"#,
            r#"{"access": {"rules": [["1.2.3.4"]]}}"#,
            r#"{"access": {"rules": {"allow": ["bad"]}}}"#,
            r#"{"access": {"allow": ["1.2.3.4"]}, "forward": {"allow": []}}"#,
            r#"{"allow": ["bad"]}"#,
            r#"[{"access": {"allow": ["bad"]}}]"#,
            r#"{"access": {"allow": ["1.2.3.4", }}"#,
            r#"{"access": {"allow": ["1.2.3.4"]}} x"#,
            r#"{"access": {"allow": ["1.2.3.4" "#,
            r#"{"access": {"deny": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["#,
            r#"{"access": {"allow": ["0.0.0.0/0", "::/0", "255.255.255.255", "ffff::/16"]}}"#,
            r#"{"access": {"allow": ["10.1.2.3/8", "aws-vpce:vpce-0a1b2c3d", "gcp-psc:1"], "deny": ["azure-link:7"]}}"#,
            r#"{"access": {"rules": [{"name": "a", "allow": ["1.1.1.1/8", "aws-vpce:vpce-0A1B2C3D"]}]}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8", "gcp-psc:5"]}}"#,
        ];
        for doc in docs {
            let streamed = format!("{:?}", parse(doc.as_bytes()));
            let whole = format!("{:?}", parse_whole_tree(doc.as_bytes()));
            assert_eq!(streamed, whole, "{doc}");
        }
        // And on a big list, compiled the same way.
        let big: Vec<String> = (0..5000u32)
            .map(|i| {
                if i % 3 == 0 {
                    format!("\"2001:db8:{:x}::/{}\"", i, 40 + i % 80)
                } else {
                    format!(
                        "\"{}.{}.{}.{}/{}\"",
                        i % 251,
                        i % 13,
                        i % 7,
                        i % 255,
                        8 + i % 25
                    )
                }
            })
            .collect();
        let doc = format!(r#"{{"access": {{"allow": [{}]}}}}"#, big.join(","));
        assert_eq!(
            format!("{:?}", parse(doc.as_bytes())),
            format!("{:?}", parse_whole_tree(doc.as_bytes()))
        );
    }
}
