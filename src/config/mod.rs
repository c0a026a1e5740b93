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
/// Lists naming sources decide as with every source unavailable: see [`parse_sourced`].
pub fn parse(bytes: &[u8]) -> Result<(Policy, Vec<ConfigWarning>), ConfigError> {
    parse_sourced(bytes).map(|(policy, _, warnings)| (policy, warnings))
}

/// Parses and compiles a configuration into a template policy (each list with its configured
/// entries, bound with every source unavailable: `bind::unbound`) and the plan of its sources
/// (docs/sources.md), which `bind::bind` combines.
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
    // Fail closed before the first bind: the lists naming sources decide as with every source
    // unavailable (an allow list of sources only is in force, a "refuse" source refuses).
    let policy = crate::bind::unbound(&policy, &plan);
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
    std::iter::once(&access.lists)
        .chain(access.rules.iter().map(|r| &r.lists))
        .fold(Kinds::default(), |k, lists| k.union(lists.links().kinds()))
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
        policy.link.kinds = link_kinds(&policy);
        self.rate_limit_section(top, &mut policy)?;
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
mod tests;
