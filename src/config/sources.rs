//! The `sources` section and the `"source:<name>"` entries of the lists (docs/sources.md): compiled
//! into a [`SourcePlan`], checked with key paths like the rest of the configuration.

use serde_json::Value;

use super::geo::GeoEntry;
use super::{err, integer, key_path, member, object, one_of, show, string, ConfigError};
use crate::bind::{Binding, GeoPlan, Slot, SourcePlan};
use crate::source::geo::Pick;
use crate::source::{
    is_source_name, Format, MinPrefix, OnUnavailable, Select, Source, MIN_REFRESH_S, SOURCE_PREFIX,
};

const SOURCE_KEYS: &[&str] = &[
    "cluster",
    "authority",
    "path",
    "format",
    "select",
    "refresh_s",
    "timeout_ms",
    "max_bytes",
    "max_entries",
    "on_unavailable",
    "max_stale_s",
    "min_prefix",
    "country_field",
    "asn_field",
];

/// A `"source:<name>"` entry met in a list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SourceRef {
    /// The list's key path (`access.allow`).
    pub(super) list: String,
    /// The entry's index in the list.
    pub(super) index: usize,
    /// The name after `source:` (empty for a `country:`/`asn:` entry).
    pub(super) name: String,
    /// A `country:`/`asn:` entry (docs/geo.md): the source is the `geo` section's.
    pub(super) geo: Option<GeoEntry>,
}

impl SourceRef {
    /// The entry a list holds at `index`, when it names a source.
    pub(super) fn of(list: &str, index: usize, text: &str) -> Option<SourceRef> {
        if let Some(geo) = GeoEntry::of(text) {
            return Some(SourceRef {
                list: list.to_string(),
                index,
                name: String::new(),
                geo: Some(geo),
            });
        }
        let name = text.strip_prefix(SOURCE_PREFIX)?;
        Some(SourceRef {
            list: list.to_string(),
            index,
            name: name.to_string(),
            geo: None,
        })
    }
}

/// The `sources` section.
pub(super) fn sources(value: &Value, path: &str) -> Result<Vec<Source>, ConfigError> {
    let map = value
        .as_object()
        .ok_or_else(|| err(path, format!("{} is not an object", show(value))))?;
    let mut out = Vec::with_capacity(map.len());
    for (name, spec) in map {
        let sp = key_path(path, &super::shown_key(name));
        if !is_source_name(name) {
            return Err(err(
                &sp,
                format!(
                    "{} is not a source name (1-64 characters of a-z 0-9 _ -)",
                    show(&Value::String(name.clone()))
                ),
            ));
        }
        out.push(source(name, spec, &sp)?);
    }
    Ok(out)
}

fn required<'v>(
    map: &'v serde_json::Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'v str, ConfigError> {
    let p = key_path(path, key);
    let v = member(map, key).ok_or_else(|| err(&p, "is missing"))?;
    let text = string(v, &p)?;
    if text.is_empty() {
        return Err(err(&p, "is empty"));
    }
    Ok(text)
}

fn bounded(value: &Value, path: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    match integer(value, path)? {
        n if (min..=max).contains(&n) => Ok(n),
        _ => Err(err(
            path,
            format!("{} is not an integer from {min} to {max}", show(value)),
        )),
    }
}

fn source(name: &str, value: &Value, path: &str) -> Result<Source, ConfigError> {
    let map = object(value, path, SOURCE_KEYS)?;
    let cluster = required(map, "cluster", path)?;
    let authority = required(map, "authority", path)?;
    let url_path = required(map, "path", path)?;
    if !url_path.starts_with('/') || url_path.contains(|c: char| c.is_whitespace()) {
        return Err(err(
            &key_path(path, "path"),
            format!("\"{url_path}\" is not a request path (it starts with / and has no spaces)"),
        ));
    }
    let format = match member(map, "format") {
        Some(v) => one_of(v, &key_path(path, "format"), &Format::ALL)?,
        None => Format::Text,
    };
    let mut source = Source::new(name, cluster, authority, url_path, format);
    if let Some(v) = member(map, "select") {
        source.select = select(v, &key_path(path, "select"), format)?;
    }
    if let Some(v) = member(map, "refresh_s") {
        let p = key_path(path, "refresh_s");
        source.refresh_s = bounded(v, &p, i64::from(MIN_REFRESH_S), 31_536_000)? as u32;
    }
    if let Some(v) = member(map, "timeout_ms") {
        source.timeout_ms = bounded(v, &key_path(path, "timeout_ms"), 1, 600_000)? as u32;
    }
    if let Some(v) = member(map, "max_bytes") {
        source.max_bytes = bounded(v, &key_path(path, "max_bytes"), 1, 1 << 40)? as usize;
    }
    if let Some(v) = member(map, "max_entries") {
        source.max_entries = bounded(v, &key_path(path, "max_entries"), 1, 1 << 32)? as usize;
    }
    if let Some(v) = member(map, "on_unavailable") {
        source.on_unavailable = one_of(
            v,
            &key_path(path, "on_unavailable"),
            &[
                ("empty", OnUnavailable::Empty),
                ("refuse", OnUnavailable::Refuse),
            ],
        )?;
    }
    if let Some(v) = member(map, "max_stale_s") {
        source.max_stale_s =
            Some(bounded(v, &key_path(path, "max_stale_s"), 1, 315_360_000)? as u64);
    }
    if let Some(v) = member(map, "min_prefix") {
        source.min_prefix = min_prefix(v, &key_path(path, "min_prefix"), source.min_prefix)?;
    }
    super::geo::fields(map, path, &mut source)?;
    Ok(source)
}

/// `min_prefix`: `{"ipv4": 1-32, "ipv6": 1-128}`, a missing family keeping its default. Read on
/// every source; applied only where `client_ip.trusted_proxies` names the source (an allow or
/// deny feed may hold broad networks; no list may hold `/0`).
fn min_prefix(value: &Value, path: &str, default: MinPrefix) -> Result<MinPrefix, ConfigError> {
    let map = object(value, path, &["ipv4", "ipv6"])?;
    let mut out = default;
    if let Some(v) = member(map, "ipv4") {
        out.ipv4 = bounded(v, &key_path(path, "ipv4"), 1, 32)? as u8;
    }
    if let Some(v) = member(map, "ipv6") {
        out.ipv6 = bounded(v, &key_path(path, "ipv6"), 1, 128)? as u8;
    }
    Ok(out)
}

fn select(value: &Value, path: &str, format: Format) -> Result<Select, ConfigError> {
    let map = value
        .as_object()
        .ok_or_else(|| err(path, format!("{} is not an object", show(value))))?;
    let known = format.select_keys();
    let mut out = Vec::with_capacity(map.len());
    for (key, values) in map {
        let kp = key_path(path, &super::shown_key(key));
        if !known.contains(&key.as_str()) {
            let name = Format::ALL
                .iter()
                .find(|(_, f)| *f == format)
                .map_or("", |f| f.0);
            let message = if known.is_empty() {
                format!("unknown key; format \"{name}\" has no select keys")
            } else {
                format!(
                    "unknown key; format \"{name}\" selects on: {}",
                    known.join(", ")
                )
            };
            return Err(err(&kp, message));
        }
        let list = values
            .as_array()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| err(&kp, format!("{} is not a non-empty list", show(values))))?;
        let mut accepted = Vec::with_capacity(list.len());
        for (i, v) in list.iter().enumerate() {
            accepted.push(string(v, &format!("{kp}[{i}]"))?.to_string());
        }
        out.push((key.clone(), accepted));
    }
    Ok(Select(out))
}

/// The plan: which lists name which sources. Every name must be defined.
pub(super) fn plan(
    sources: Vec<Source>,
    refs: &[SourceRef],
    geo: GeoPlan,
) -> Result<SourcePlan, ConfigError> {
    let mut bindings: Vec<Binding> = Vec::new();
    for r in refs {
        if let Some(entry) = &r.geo {
            let Some((index, pick)) = geo_pick(r, entry, geo)? else {
                continue;
            };
            let Some(slot) = Slot::of_path(&r.list) else {
                continue;
            };
            let b = match bindings.iter_mut().position(|b| b.slot == slot) {
                Some(at) => &mut bindings[at],
                None => {
                    bindings.push(Binding {
                        slot,
                        sources: Vec::new(),
                        picks: Vec::new(),
                    });
                    bindings.last_mut().expect("just pushed")
                }
            };
            match (b.picks.iter_mut().find(|p| p.0 == index), pick) {
                (Some((_, Pick::Countries(have))), Pick::Countries(c)) => have.extend(c),
                (Some((_, Pick::Asns(have))), Pick::Asns(a)) => have.extend(a),
                (_, pick) => b.picks.push((index, pick)),
            }
            continue;
        }
        let Some(index) = sources.iter().position(|s| s.name == r.name) else {
            let defined: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
            let known = if defined.is_empty() {
                "no sources are defined".to_string()
            } else {
                format!("sources defines: {}", defined.join(", "))
            };
            return Err(err(
                &format!("{}[{}]", r.list, r.index),
                format!(
                    "\"{SOURCE_PREFIX}{}\" names no source in sources ({known})",
                    r.name
                ),
            ));
        };
        let Some(slot) = Slot::of_path(&r.list) else {
            continue;
        };
        match bindings.iter_mut().find(|b| b.slot == slot) {
            Some(b) if b.sources.contains(&index) => {}
            Some(b) => b.sources.push(index),
            None => bindings.push(Binding {
                slot,
                sources: vec![index],
                picks: Vec::new(),
            }),
        }
    }
    Ok(SourcePlan {
        sources,
        bindings,
        geo,
    })
}

/// The database source and selection of a `country:`/`asn:` entry; an error for a malformed
/// one, one in `trusted_proxies`, or one without the matching `geo` source.
fn geo_pick(
    r: &SourceRef,
    entry: &GeoEntry,
    geo: GeoPlan,
) -> Result<Option<(usize, Pick)>, ConfigError> {
    let at = format!("{}[{}]", r.list, r.index);
    if r.list == "client_ip.trusted_proxies" {
        return Err(err(
            &at,
            "country: and asn: entries are not allowed in client_ip.trusted_proxies (a database does not say who is a proxy)",
        ));
    }
    let (source, pick, key) = match entry {
        GeoEntry::Bad(message) => return Err(err(&at, message.clone())),
        GeoEntry::Country(c) => (geo.country, Pick::Countries(vec![*c]), "geo.country"),
        GeoEntry::Asn(n) => (geo.asn, Pick::Asns(vec![*n]), "geo.asn"),
    };
    match source {
        Some(i) => Ok(Some((i, pick))),
        None => Err(err(
            &at,
            format!("needs {key}: the mmdb source that gives it (docs/geo.md)"),
        )),
    }
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
