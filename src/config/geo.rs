//! The `geo` section, the `country_field`/`asn_field` of `mmdb` sources and the `country:`/`asn:`
//! list entries (docs/geo.md), checked with key paths like the rest of the configuration.

use serde_json::{Map, Value};

use super::{err, key_path, member, object, show, string, ConfigError};
use crate::bind::GeoPlan;
use crate::source::{Format, Source};

/// The prefix of a country entry (`country:KP`).
pub const COUNTRY_PREFIX: &str = "country:";
/// The prefix of an AS number entry (`asn:64496`, `asn:AS64496`).
pub const ASN_PREFIX: &str = "asn:";
/// Most segments of a field path.
const MAX_SEGMENTS: usize = 8;

/// A `country:` or `asn:` entry, or why it is not one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum GeoEntry {
    /// `country:XX`, upper case.
    Country([u8; 2]),
    /// `asn:N`.
    Asn(u32),
    /// A malformed entry: the message.
    Bad(String),
}

impl GeoEntry {
    /// The entry `text` when it starts with `country:` or `asn:`.
    pub(super) fn of(text: &str) -> Option<GeoEntry> {
        let shown = || show(&Value::String(text.to_owned()));
        if let Some(code) = text.strip_prefix(COUNTRY_PREFIX) {
            return Some(match code.as_bytes() {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    GeoEntry::Country([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
                }
                _ => GeoEntry::Bad(format!(
                    "{} is not a country: entry (two letters, ISO 3166-1 alpha-2, like \"country:KP\")",
                    shown()
                )),
            });
        }
        let number = text.strip_prefix(ASN_PREFIX)?;
        let digits = number
            .strip_prefix("AS")
            .or_else(|| number.strip_prefix("as"))
            .unwrap_or(number);
        let n = (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<u64>().ok())
            .flatten();
        Some(match n {
            Some(n @ 1..=4_294_967_295) => GeoEntry::Asn(n as u32),
            _ => GeoEntry::Bad(format!(
                "{} is not an asn: entry (an AS number from 1 to 4294967295, like \"asn:64496\" or \"asn:AS64496\")",
                shown()
            )),
        })
    }
}

/// A dotted field path (`country.iso_code`): 1–8 non-empty segments.
pub(super) fn field_path(value: &Value, path: &str) -> Result<Vec<String>, ConfigError> {
    let text = string(value, path)?;
    let segments: Vec<String> = text.split('.').map(str::to_string).collect();
    if text.is_empty() || segments.iter().any(String::is_empty) || segments.len() > MAX_SEGMENTS {
        return Err(err(
            path,
            format!(
                "{} is not a field path (names separated by dots, like \"country.iso_code\"; at most {MAX_SEGMENTS})",
                show(value)
            ),
        ));
    }
    Ok(segments)
}

/// `country_field` and `asn_field` of a source's map: only on `mmdb` sources, which name at
/// least one.
pub(super) fn fields(
    map: &Map<String, Value>,
    path: &str,
    source: &mut Source,
) -> Result<(), ConfigError> {
    for (key, slot) in [
        ("country_field", &mut source.fields.country),
        ("asn_field", &mut source.fields.asn),
    ] {
        if let Some(v) = member(map, key) {
            let p = key_path(path, key);
            if source.format != Format::Mmdb {
                return Err(err(&p, "is only for sources of format \"mmdb\""));
            }
            *slot = Some(field_path(v, &p)?);
        }
    }
    if source.format == Format::Mmdb
        && source.fields.country.is_none()
        && source.fields.asn.is_none()
    {
        return Err(err(
            path,
            "an mmdb source names country_field, asn_field or both (the record fields it reads)",
        ));
    }
    Ok(())
}

/// The `geo` section: which `mmdb` sources give the country and the AS number.
pub(super) fn geo(value: &Value, path: &str, sources: &[Source]) -> Result<GeoPlan, ConfigError> {
    let map = object(value, path, &["country", "asn"])?;
    let mut plan = GeoPlan::default();
    for (key, field) in [("country", "country_field"), ("asn", "asn_field")] {
        let Some(v) = member(map, key) else {
            continue;
        };
        let p = key_path(path, key);
        let name = string(v, &p)?;
        let Some(i) = sources.iter().position(|s| s.name == name) else {
            return Err(err(&p, format!("\"{name}\" names no source in sources")));
        };
        let s = &sources[i];
        if s.format != Format::Mmdb {
            return Err(err(
                &p,
                format!("source \"{name}\" is not of format \"mmdb\""),
            ));
        }
        let has = if key == "country" {
            s.fields.country.is_some()
        } else {
            s.fields.asn.is_some()
        };
        if !has {
            return Err(err(&p, format!("source \"{name}\" has no {field}")));
        }
        if key == "country" {
            plan.country = Some(i);
        } else {
            plan.asn = Some(i);
        }
    }
    Ok(plan)
}
