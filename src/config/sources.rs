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
mod tests {
    //! Spec §7: the `sources` section, `"source:<name>"` entries, and lists bound to sources.
    use crate::access::Verdict;
    use crate::bind::{bind, Slot};
    use crate::config::parse_sourced;
    use crate::ipset::{parse_net, IpSet};
    use crate::policy::{Downstream, Request};
    use crate::source::{
        Format, MinPrefix, OnUnavailable, Select, DEFAULT_MAX_BYTES, DEFAULT_MIN_PREFIX,
    };

    const SRC: &str = r#""cluster": "lists", "authority": "lists.example", "path": "/a.txt""#;

    fn error(doc: &str) -> String {
        parse_sourced(doc.as_bytes()).unwrap_err().to_string()
    }

    fn with_source(extra: &str, lists: &str) -> String {
        format!(r#"{{"sources": {{"feed": {{{SRC}{extra}}}}}, {lists}}}"#)
    }

    fn set(nets: &[&str]) -> IpSet {
        IpSet::from_nets(nets.iter().map(|n| parse_net(n).unwrap().0))
    }

    fn verdict(policy: &crate::policy::Policy, client: &str) -> (Verdict, bool) {
        let headers = Vec::new();
        let d = policy.decide(&Request {
            downstream: Downstream::from_filter_state(&format!("{client}:1000")),
            headers: &headers,
        });
        (d.verdict, d.unavailable)
    }

    #[test]
    fn a_source_gets_its_defaults() {
        let doc = with_source("", r#""access": {"deny": ["source:feed"]}"#);
        let (_, plan, warnings) = parse_sourced(doc.as_bytes()).unwrap();
        assert!(warnings.is_empty());
        let s = &plan.sources[0];
        assert_eq!((s.name.as_str(), s.cluster.as_str()), ("feed", "lists"));
        assert_eq!(
            (s.format, s.refresh_s, s.timeout_ms),
            (Format::Text, 300, 10_000)
        );
        assert_eq!((s.max_bytes, s.max_entries), (DEFAULT_MAX_BYTES, 2_000_000));
        assert_eq!(
            (s.on_unavailable, s.max_stale_s),
            (OnUnavailable::Empty, None)
        );
        assert_eq!(plan.bindings[0].slot, Slot::Deny);
    }

    #[test]
    fn every_setting_is_read() {
        let doc = r#"{"sources": {"cloudfront": {"cluster": "outbound|443||ip-ranges.amazonaws.com",
            "authority": "ip-ranges.amazonaws.com", "path": "/ip-ranges.json", "format": "aws",
            "select": {"service": ["CLOUDFRONT"]}, "refresh_s": 3600, "timeout_ms": 5000,
            "max_bytes": 1000000, "max_entries": 50000, "on_unavailable": "refuse",
            "max_stale_s": 86400}},
            "client_ip": {"trusted_proxies": ["10.0.0.0/8", "source:cloudfront"]}}"#;
        let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let s = &plan.sources[0];
        assert_eq!(s.format, Format::Aws);
        assert_eq!(
            s.select,
            Select(vec![("service".into(), vec!["CLOUDFRONT".into()])])
        );
        assert_eq!(
            (s.refresh_s, s.timeout_ms, s.max_bytes),
            (3600, 5000, 1_000_000)
        );
        assert_eq!(s.max_entries, 50_000);
        assert_eq!(
            (s.on_unavailable, s.max_stale_s),
            (OnUnavailable::Refuse, Some(86_400))
        );
        assert_eq!(plan.bindings[0].slot, Slot::TrustedProxies);
    }

    #[test]
    fn source_entries_are_accepted_in_every_list() {
        let doc = with_source(
            "",
            r#""client_ip": {"trusted_proxies": ["source:feed"]},
               "access": {"allow": ["source:feed"], "deny": ["1.2.3.4", "source:feed"],
                 "rules": [{"name": "r", "allow": ["source:feed"], "deny": ["source:feed"]}]}"#,
        );
        let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let slots: Vec<Slot> = plan.bindings.iter().map(|b| b.slot).collect();
        assert_eq!(
            slots,
            [
                Slot::TrustedProxies,
                Slot::Allow,
                Slot::Deny,
                Slot::RuleAllow(0),
                Slot::RuleDeny(0)
            ]
        );
    }

    #[test]
    fn a_source_name_used_but_not_defined_is_an_error() {
        let doc = with_source("", r#""access": {"allow": ["10.0.0.0/8", "source:nope"]}"#);
        assert_eq!(
            error(&doc),
            "access.allow[1]: \"source:nope\" names no source in sources (sources defines: feed)"
        );
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "r", "deny": ["source:x"]}]}}"#),
            "access.rules[0].deny[0]: \"source:x\" names no source in sources (no sources are defined)"
        );
    }

    #[test]
    fn an_unused_source_is_a_warning_and_not_fetched() {
        let doc = with_source("", r#""access": {}"#);
        let (_, plan, warnings) = parse_sourced(doc.as_bytes()).unwrap();
        assert!(plan.is_empty());
        assert!(
            warnings[0].0.contains("sources.feed: no list names"),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_unknown_format_is_an_error() {
        let doc = with_source(r#", "format": "csv""#, r#""access": {}"#);
        assert_eq!(
            error(&doc),
            "sources.feed.format: \"csv\" is not one of \"text\", \"aws\", \"gcp\", \"azure\", \"mmdb\""
        );
    }

    #[test]
    fn a_select_key_the_format_lacks_is_an_error() {
        let doc = with_source(
            r#", "format": "gcp", "select": {"region": ["x"]}"#,
            r#""access": {}"#,
        );
        assert_eq!(
            error(&doc),
            "sources.feed.select.region: unknown key; format \"gcp\" selects on: service, scope"
        );
        let doc = with_source(r#", "select": {"service": ["x"]}"#, r#""access": {}"#);
        assert_eq!(
            error(&doc),
            "sources.feed.select.service: unknown key; format \"text\" has no select keys"
        );
        let doc = with_source(
            r#", "format": "aws", "select": {"service": []}"#,
            r#""access": {}"#,
        );
        assert_eq!(
            error(&doc),
            "sources.feed.select.service: [] is not a non-empty list"
        );
    }

    #[test]
    fn refresh_s_below_10_is_an_error() {
        let doc = with_source(r#", "refresh_s": 9"#, r#""access": {}"#);
        assert_eq!(
            error(&doc),
            "sources.feed.refresh_s: 9 is not an integer from 10 to 31536000"
        );
    }

    #[test]
    fn an_empty_cluster_authority_or_path_is_an_error() {
        for key in ["cluster", "authority", "path"] {
            let mut spec = serde_json::json!({"cluster": "c", "authority": "a", "path": "/x"});
            spec[key] = "".into();
            let doc = serde_json::json!({"sources": {"feed": spec}}).to_string();
            assert_eq!(error(&doc), format!("sources.feed.{key}: is empty"));
        }
        let missing = r#"{"sources": {"feed": {"cluster": "c", "path": "/x"}}}"#;
        assert_eq!(error(missing), "sources.feed.authority: is missing");
    }

    #[test]
    fn a_path_must_start_with_a_slash() {
        let doc = r#"{"sources": {"feed": {"cluster": "c", "authority": "a", "path": "x.txt"}}}"#;
        assert_eq!(
            error(doc),
            "sources.feed.path: \"x.txt\" is not a request path (it starts with / and has no spaces)"
        );
    }

    #[test]
    fn a_source_name_outside_the_alphabet_is_an_error() {
        let doc = format!(r#"{{"sources": {{"Feed.1": {{{SRC}}}}}}}"#);
        assert_eq!(
            error(&doc),
            "sources.Feed.1: \"Feed.1\" is not a source name (1-64 characters of a-z 0-9 _ -)"
        );
    }

    #[test]
    fn min_prefix_defaults_to_8_and_16_and_is_read_per_family() {
        let doc = with_source("", r#""client_ip": {"trusted_proxies": ["source:feed"]}"#);
        let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        assert_eq!(plan.sources[0].min_prefix, DEFAULT_MIN_PREFIX);
        assert!(plan.is_trusted(0));
        let doc = with_source(
            r#", "min_prefix": {"ipv4": 24}"#,
            r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
        );
        let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        assert_eq!(plan.sources[0].min_prefix, MinPrefix { ipv4: 24, ipv6: 16 });
        let doc = with_source(
            r#", "min_prefix": {"ipv6": 128}"#,
            r#""access": {"deny": ["source:feed"]}"#,
        );
        let (_, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        assert!(
            !plan.is_trusted(0),
            "read on any source, applied as trusted proxies only"
        );
    }

    #[test]
    fn min_prefix_out_of_range_or_of_the_wrong_shape_is_an_error() {
        for (extra, want) in [
            (
                r#""ipv4": 0"#,
                "sources.feed.min_prefix.ipv4: 0 is not an integer from 1 to 32",
            ),
            (
                r#""ipv4": 33"#,
                "sources.feed.min_prefix.ipv4: 33 is not an integer from 1 to 32",
            ),
            (
                r#""ipv6": 129"#,
                "sources.feed.min_prefix.ipv6: 129 is not an integer from 1 to 128",
            ),
            (
                r#""ipv6": "16""#,
                "sources.feed.min_prefix.ipv6: \"16\" is not an integer",
            ),
            (
                r#""v4": 8"#,
                "sources.feed.min_prefix.v4: unknown key; expected one of: ipv4, ipv6",
            ),
        ] {
            let doc = with_source(
                &format!(r#", "min_prefix": {{{extra}}}"#),
                r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
            );
            assert_eq!(error(&doc), want);
        }
        let doc = with_source(r#", "min_prefix": 8"#, r#""access": {}"#);
        assert_eq!(error(&doc), "sources.feed.min_prefix: 8 is not an object");
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_errors_with_their_path() {
        let doc = with_source(r#", "on_unavailable": "drop""#, r#""access": {}"#);
        assert_eq!(
            error(&doc),
            "sources.feed.on_unavailable: \"drop\" is not one of \"empty\", \"refuse\""
        );
        let doc = with_source(r#", "timeout_ms": "5s""#, r#""access": {}"#);
        assert_eq!(
            error(&doc),
            "sources.feed.timeout_ms: \"5s\" is not an integer"
        );
        assert_eq!(error(r#"{"sources": []}"#), "sources: [] is not an object");
    }

    #[test]
    fn a_bound_deny_list_holds_its_own_entries_and_the_sources() {
        let doc = with_source("", r#""access": {"deny": ["1.2.3.4", "source:feed"]}"#);
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let feed = set(&["203.0.113.0/24"]);
        let policy = bind(&template, &plan, &[Some(&feed)]);
        assert_eq!(verdict(&policy, "1.2.3.4").0, Verdict::Deny);
        assert_eq!(verdict(&policy, "203.0.113.9").0, Verdict::Deny);
        assert_eq!(verdict(&policy, "198.51.100.1").0, Verdict::Allow);
        // The template still decides with its own entries only.
        assert_eq!(verdict(&template, "203.0.113.9").0, Verdict::Allow);
    }

    #[test]
    fn an_unavailable_source_with_on_unavailable_empty_holds_no_address() {
        let doc = with_source("", r#""access": {"deny": ["1.2.3.4", "source:feed"]}"#);
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let policy = bind::<IpSet>(&template, &plan, &[None]);
        assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Allow, false));
        assert_eq!(verdict(&policy, "1.2.3.4"), (Verdict::Deny, false));
    }

    #[test]
    fn an_allow_list_naming_an_unavailable_source_stays_in_force() {
        let doc = with_source("", r#""access": {"allow": ["source:feed"]}"#);
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let policy = bind::<IpSet>(&template, &plan, &[None]);
        assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Deny, false));
        let feed = set(&["203.0.113.0/24"]);
        let policy = bind(&template, &plan, &[Some(&feed)]);
        assert_eq!(verdict(&policy, "203.0.113.9"), (Verdict::Allow, false));
        assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Deny, false));
    }

    #[test]
    fn an_unavailable_source_with_on_unavailable_refuse_refuses_requests_reading_it() {
        let doc = with_source(
            r#", "on_unavailable": "refuse""#,
            r#""access": {"deny": ["source:feed"],
                "rules": [{"name": "open", "hosts": ["open.example"]},
                          {"name": "dry", "hosts": ["dry.example"], "deny": ["source:feed"], "mode": "dry_run"}]}"#,
        );
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let policy = bind::<IpSet>(&template, &plan, &[None]);
        let decide = |authority: &str| {
            let headers = vec![(":authority".to_string(), authority.to_string())];
            let d = policy.decide(&Request {
                downstream: Downstream::from_filter_state("198.51.100.1:1000"),
                headers: &headers,
            });
            (d.verdict, d.unavailable)
        };
        assert_eq!(decide("top.example"), (Verdict::Deny, true));
        assert_eq!(
            decide("open.example"),
            (Verdict::Allow, false),
            "its lists name no source"
        );
        assert_eq!(decide("dry.example"), (Verdict::DryRunDeny, true));
        let feed = set(&["203.0.113.0/24"]);
        let policy = bind(&template, &plan, &[Some(&feed)]);
        let headers = Vec::new();
        let d = policy.decide(&Request {
            downstream: Downstream::from_filter_state("198.51.100.1:1000"),
            headers: &headers,
        });
        assert_eq!((d.verdict, d.unavailable), (Verdict::Allow, false));
    }

    #[test]
    fn trusted_proxies_from_a_source_are_believed() {
        let doc = with_source(
            "",
            r#""client_ip": {"trusted_proxies": ["10.0.0.1", "source:feed"]}, "access": {"deny": ["192.0.2.66"]}"#,
        );
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let cdn = set(&["13.32.0.0/15"]);
        let policy = bind(&template, &plan, &[Some(&cdn)]);
        let headers = vec![("x-forwarded-for".to_string(), "192.0.2.66".to_string())];
        let decide = |p: &crate::policy::Policy, downstream: &str| {
            p.decide(&Request {
                downstream: Downstream::from_filter_state(downstream),
                headers: &headers,
            })
            .verdict
        };
        assert_eq!(
            decide(&policy, "13.33.1.1:443"),
            Verdict::Deny,
            "CDN is trusted"
        );
        assert_eq!(
            decide(&policy, "10.0.0.1:443"),
            Verdict::Deny,
            "own entry kept"
        );
        assert_eq!(decide(&policy, "198.51.100.1:443"), Verdict::Allow);
        let unbound = bind::<IpSet>(&template, &plan, &[None]);
        assert_eq!(decide(&unbound, "13.33.1.1:443"), Verdict::Allow);
    }

    #[test]
    fn trusted_proxies_naming_an_unavailable_refuse_source_refuse_every_request() {
        let doc = with_source(
            r#", "on_unavailable": "refuse""#,
            r#""client_ip": {"trusted_proxies": ["source:feed"]}"#,
        );
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        let policy = bind::<IpSet>(&template, &plan, &[None]);
        assert_eq!(verdict(&policy, "198.51.100.1"), (Verdict::Deny, true));
    }
}
