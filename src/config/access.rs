//! The `access` section (docs/access.md): the top-level lists, the deny reply and the rules.

use std::collections::HashMap;

use serde_json::Value;

use super::{
    array, err, integer, key_path, member, object, one_of, show, string, ConfigError, Walk,
};
use crate::access::{Access, HostPattern, MatchOn, Mode, Rule};
use crate::path::PathCase;

const ACCESS_KEYS: &[&str] = &[
    "mode",
    "match",
    "allow",
    "deny",
    "deny_status",
    "deny_body",
    "rules",
];
/// The keys of one rule (`access.rules[i]`).
pub(super) const RULE_KEYS: &[&str] = &[
    "name",
    "hosts",
    "path_prefixes",
    "path_case",
    "allow",
    "deny",
    "mode",
];

impl Walk {
    /// The `access` section.
    pub(super) fn access(&mut self, value: &Value, path: &str) -> Result<Access, ConfigError> {
        let map = object(value, path, ACCESS_KEYS)?;
        let mut access = Access::default();
        if let Some(v) = member(map, "mode") {
            access.mode = mode(v, &key_path(path, "mode"))?;
        }
        if let Some(v) = member(map, "match") {
            access.match_on = one_of(
                v,
                &key_path(path, "match"),
                &[
                    ("client", MatchOn::Client),
                    ("downstream", MatchOn::Downstream),
                ],
            )?;
        }
        access.lists = self.lists(map, path)?;
        if let Some(v) = member(map, "deny_status") {
            let p = key_path(path, "deny_status");
            access.deny_status = match integer(v, &p)? {
                s @ 400..=599 => s as u32,
                _ => return Err(err(&p, format!("{} is not between 400 and 599", show(v)))),
            };
        }
        if let Some(v) = member(map, "deny_body") {
            access.deny_body = string(v, &key_path(path, "deny_body"))?.to_string();
        }
        if let Some(v) = member(map, "rules") {
            let p = key_path(path, "rules");
            let mut first_use: HashMap<String, usize> = HashMap::new();
            for (i, rule) in array(v, &p)?.iter().enumerate() {
                let rp = format!("{p}[{i}]");
                let rule = self.rule(rule, &rp, access.mode)?;
                // Prometheus turns `-` into `_`: `r-1` and `r_1` would export the same series.
                if let Some(first) = first_use.insert(rule.name.replace('-', "_"), i) {
                    let clash = &access.rules[first].name;
                    let message = if *clash == rule.name {
                        format!("\"{}\" is already the name of {p}[{first}]", rule.name)
                    } else {
                        format!(
                            "\"{}\" and \"{clash}\" ({p}[{first}]) are the same name in Prometheus, where - becomes _",
                            rule.name
                        )
                    };
                    return Err(err(&format!("{rp}.name"), message));
                }
                access.rules.push(rule);
            }
        }
        Ok(access)
    }

    fn rule(&mut self, value: &Value, path: &str, default_mode: Mode) -> Result<Rule, ConfigError> {
        let map = object(value, path, RULE_KEYS)?;
        let name_path = key_path(path, "name");
        let name_value = member(map, "name")
            .ok_or_else(|| err(&name_path, "is missing; every rule needs a name"))?;
        let name = string(name_value, &name_path)?;
        let well_formed = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(err(
                &name_path,
                format!("{} is not 1-64 characters of a-z 0-9 _ -", show(name_value)),
            ));
        }
        let hosts = match member(map, "hosts") {
            None => Vec::new(),
            Some(v) => {
                let p = key_path(path, "hosts");
                let list = non_empty(array(v, &p)?, &p, "host")?;
                let mut hosts = Vec::with_capacity(list.len());
                for (i, h) in list.iter().enumerate() {
                    hosts.push(host_pattern(h, &format!("{p}[{i}]"))?);
                }
                hosts
            }
        };
        let path_prefixes = match member(map, "path_prefixes") {
            None => Vec::new(),
            Some(v) => {
                let p = key_path(path, "path_prefixes");
                let list = non_empty(array(v, &p)?, &p, "path")?;
                let mut prefixes = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    let ip = format!("{p}[{i}]");
                    let prefix = string(item, &ip)?;
                    if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
                        return Err(err(
                            &ip,
                            format!(
                                "{} is not a path prefix (it starts with / and has no ? or #)",
                                show(item)
                            ),
                        ));
                    }
                    prefixes.push(prefix.to_string());
                }
                prefixes
            }
        };
        let mode = match member(map, "mode") {
            Some(v) => mode(v, &key_path(path, "mode"))?,
            None => default_mode,
        };
        let path_case = match member(map, "path_case") {
            Some(v) => one_of(
                v,
                &key_path(path, "path_case"),
                &[
                    ("sensitive", PathCase::Sensitive),
                    ("insensitive", PathCase::Insensitive),
                ],
            )?,
            None => PathCase::Sensitive,
        };
        Ok(Rule {
            name: name.to_string(),
            hosts,
            path_prefixes,
            lists: self.lists(map, path)?,
            mode,
            path_case,
        })
    }
}

fn mode(value: &Value, path: &str) -> Result<Mode, ConfigError> {
    one_of(
        value,
        path,
        &[("enforce", Mode::Enforce), ("dry_run", Mode::DryRun)],
    )
}

fn non_empty<'v>(
    list: &'v Vec<Value>,
    path: &str,
    what: &str,
) -> Result<&'v Vec<Value>, ConfigError> {
    if list.is_empty() {
        return Err(err(
            path,
            format!("[] matches no {what}; omit the key to match every {what}"),
        ));
    }
    Ok(list)
}

/// `name`, `*.suffix`, or an IPv6 literal in brackets; lower-cased, without a trailing dot.
fn host_pattern(value: &Value, path: &str) -> Result<HostPattern, ConfigError> {
    let text = string(value, path)?.to_ascii_lowercase();
    let text = text.strip_suffix('.').unwrap_or(&text);
    let is_name = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && !s.contains("..")
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    };
    let is_ipv6_literal = |s: &str| {
        s.strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(crate::addr::parse_ip)
            .is_some_and(|ip| ip.is_ipv6())
    };
    if let Some(suffix) = text.strip_prefix("*.") {
        if is_name(suffix) {
            return Ok(HostPattern::Subdomains(format!(".{suffix}")));
        }
    } else if is_name(text) || is_ipv6_literal(text) {
        return Ok(HostPattern::Exact(text.to_string()));
    }
    Err(err(
        path,
        format!(
            "{} is not a host name or *.suffix (no port, no other wildcard)",
            show(value)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::access::Mode;
    use crate::config::parse;
    use crate::path::PathCase;
    use crate::testutil::config_error as error;

    #[test]
    fn duplicate_or_badly_formed_rule_name_is_refused() {
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "a"}, {"name": "b"}, {"name": "a"}]}}"#),
            "access.rules[2].name: \"a\" is already the name of access.rules[0]"
        );
        for bad in [
            "\"Admin\"",
            "\"\"",
            "\"a.b\"",
            "\"a b\"",
            &format!("\"{}\"", "a".repeat(65)),
            "7",
        ] {
            let e = error(&format!(
                r#"{{"access": {{"rules": [{{"name": {bad}}}]}}}}"#
            ));
            assert!(e.starts_with("access.rules[0].name: "), "{e}");
        }
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "r-1"}, {"name": "r_1"}]}}"#),
            "access.rules[1].name: \"r_1\" and \"r-1\" (access.rules[0]) are the same name in Prometheus, where - becomes _"
        );
        assert_eq!(
            error(r#"{"access": {"rules": [{"hosts": ["a.com"]}]}}"#),
            "access.rules[0].name: is missing; every rule needs a name"
        );
        assert!(parse(
            format!(
                r#"{{"access": {{"rules": [{{"name": "{}"}}]}}}}"#,
                "a_-9".repeat(16)
            )
            .as_bytes()
        )
        .is_ok());
    }

    #[test]
    fn deny_status_outside_400_to_599_is_refused() {
        assert_eq!(
            error(r#"{"access": {"deny_status": 200}}"#),
            "access.deny_status: 200 is not between 400 and 599"
        );
        assert!(error(r#"{"access": {"deny_status": 600}}"#).starts_with("access.deny_status: 600"));
        assert!(parse(br#"{"access": {"deny_status": 599}}"#).is_ok());
        assert!(parse(br#"{"access": {"deny_status": 400}}"#).is_ok());
    }

    #[test]
    fn bad_rule_hosts_and_path_prefixes_are_refused() {
        for bad in [
            "\"*\"",
            "\"a.*.com\"",
            "\"example.com:80\"",
            "\"*.\"",
            "\"\"",
            "\"a b\"",
            "\"[::1\"",
        ] {
            let e = error(&format!(
                r#"{{"access": {{"rules": [{{"name": "r", "hosts": [{bad}]}}]}}}}"#
            ));
            assert!(e.starts_with("access.rules[0].hosts[0]: "), "{e}");
        }
        assert!(
            error(r#"{"access": {"rules": [{"name": "r", "hosts": []}]}}"#)
                .starts_with("access.rules[0].hosts: []")
        );
        assert!(
            error(r#"{"access": {"rules": [{"name": "r", "path_prefixes": ["admin"]}]}}"#)
                .starts_with("access.rules[0].path_prefixes[0]: \"admin\"")
        );
        assert!(parse(br#"{"access": {"rules": [{"name": "r", "hosts": ["[2001:db8::1]", "Admin.Example.COM.", "*.a-b.io"]}]}}"#).is_ok());
    }

    #[test]
    fn path_case_is_sensitive_or_insensitive() {
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "a", "path_case": "ignore"}]}}"#),
            "access.rules[0].path_case: \"ignore\" is not one of \"sensitive\", \"insensitive\""
        );
        assert_eq!(
            error(r#"{"access": {"rules": [{"name": "a", "path_case": false}]}}"#),
            "access.rules[0].path_case: false is not a string"
        );
        let (p, _) = parse(
            br#"{"access": {"rules": [{"name": "a", "path_prefixes": ["/a"]},
            {"name": "b", "path_prefixes": ["/b"], "path_case": "insensitive"}]}}"#,
        )
        .unwrap();
        assert_eq!(p.access.rules[0].path_case, PathCase::Sensitive);
        assert_eq!(p.access.rules[1].path_case, PathCase::Insensitive);
    }

    #[test]
    fn rule_mode_defaults_to_the_top_level_mode() {
        let (p, _) = parse(br#"{"access": {"mode": "dry_run", "rules": [{"name": "a"}, {"name": "b", "mode": "enforce"}]}}"#).unwrap();
        assert_eq!(p.access.rules[0].mode, Mode::DryRun);
        assert_eq!(p.access.rules[1].mode, Mode::Enforce);
    }
}
