//! The `rate_limit` section (docs/rate-limits.md): how a request's rate-limit key is made, and
//! the header it is also written to.

use serde_json::{Map, Value};

use super::{
    err, forward::forwarded_header_name, integer, key_path, member, object, show, ConfigError, Walk,
};
use crate::forward::Forwarding;
use crate::identity::LinkPolicy;
use crate::policy::Policy;
use crate::rate_limit::{RateLimit, IPV4_PREFIXES, IPV6_PREFIXES};

const RATE_LIMIT_KEYS: &[&str] = &["ipv4_prefix", "ipv6_prefix", "by_link", "exempt", "header"];

fn prefix(
    value: &Value,
    path: &str,
    range: std::ops::RangeInclusive<u8>,
) -> Result<u8, ConfigError> {
    let n = integer(value, path)?;
    u8::try_from(n)
        .ok()
        .filter(|p| range.contains(p))
        .ok_or_else(|| {
            err(
                path,
                format!(
                    "{} is outside {}–{}",
                    show(value),
                    range.start(),
                    range.end()
                ),
            )
        })
}

impl Walk {
    /// Compiles the document's `rate_limit` section, when present, into `policy` (whose `forward`
    /// section is compiled): its header is written by the filter, so every other spelling of it is
    /// removed from requests and it is not stripped (an explicit `forward.strip` naming it is an
    /// error).
    pub(super) fn rate_limit_section(
        &mut self,
        top: &Map<String, Value>,
        policy: &mut Policy,
    ) -> Result<(), ConfigError> {
        let Some(section) = member(top, "rate_limit") else {
            return Ok(());
        };
        let rl = self.rate_limit(section, "rate_limit", &policy.forwarding, &policy.link)?;
        if let Some(name) = &rl.header {
            let folded = name.replace('_', "-");
            let stripped = policy.forwarding.strip.contains(&folded);
            let explicit = member(top, "forward")
                .and_then(Value::as_object)
                .is_some_and(|f| member(f, "strip").is_some());
            if stripped && explicit {
                return Err(err(
                    "rate_limit.header",
                    format!("\"{name}\" is also in forward.strip: the filter writes it"),
                ));
            }
            policy.forwarding.strip.retain(|s| *s != folded);
            policy.forwarding.rate_limit_header = Some(name.clone());
        }
        // `by_link` reads every identity kind, `exempt` those it lists.
        policy.link.kinds = policy.link.kinds.union(rl.link_kinds());
        policy.rate_limit = Some(rl);
        Ok(())
    }

    /// The `rate_limit` section. `forwarding` and `link` are the compiled `forward` section: the
    /// key header must be none of the headers it writes.
    pub(super) fn rate_limit(
        &mut self,
        value: &Value,
        path: &str,
        forwarding: &Forwarding,
        link: &LinkPolicy,
    ) -> Result<RateLimit, ConfigError> {
        let map = object(value, path, RATE_LIMIT_KEYS)?;
        let mut rl = RateLimit::default();
        if let Some(v) = member(map, "ipv4_prefix") {
            rl.ipv4_prefix = prefix(v, &key_path(path, "ipv4_prefix"), IPV4_PREFIXES)?;
        }
        if let Some(v) = member(map, "ipv6_prefix") {
            rl.ipv6_prefix = prefix(v, &key_path(path, "ipv6_prefix"), IPV6_PREFIXES)?;
        }
        if let Some(v) = member(map, "by_link") {
            rl.by_link = v.as_bool().ok_or_else(|| {
                err(
                    &key_path(path, "by_link"),
                    format!("{} is not true or false", show(v)),
                )
            })?;
        }
        if let Some(v) = member(map, "exempt") {
            let (nets, links) = self.ip_set(v, &key_path(path, "exempt"))?;
            rl.exempt = nets;
            rl.exempt_links = links;
        }
        if let Some(v) = member(map, "header") {
            let p = key_path(path, "header");
            let name = forwarded_header_name(v, &p)?;
            let taken = forwarding.headers.contains(&name)
                || forwarding.port_header.as_ref() == Some(&name)
                || link.header.as_ref() == Some(&name);
            if taken {
                return Err(err(
                    &p,
                    format!(
                        "{} is also written by the forward section: a header holds one thing",
                        show(v)
                    ),
                ));
            }
            rl.header = Some(name);
        }
        Ok(rl)
    }
}

#[cfg(test)]
mod tests {
    //! The `rate_limit` section's errors, one test per rule, and what it compiles to.
    use crate::config::parse;
    use crate::rate_limit::Keying;
    use crate::testutil::config_error as error;

    fn rl(json: &str) -> crate::rate_limit::RateLimit {
        parse(json.as_bytes()).unwrap().0.rate_limit.unwrap()
    }

    #[test]
    fn an_absent_section_means_no_rate_limit_key() {
        assert!(parse(b"{}").unwrap().0.rate_limit.is_none());
        assert!(parse(br#"{"rate_limit": null}"#)
            .unwrap()
            .0
            .rate_limit
            .is_none());
    }

    #[test]
    fn an_empty_section_takes_the_defaults() {
        let r = rl(r#"{"rate_limit": {}}"#);
        assert_eq!((r.ipv4_prefix, r.ipv6_prefix, r.by_link), (32, 64, false));
        assert!(r.exempt.is_empty() && r.exempt_links.is_empty() && r.header.is_none());
    }

    #[test]
    fn the_documented_example_section_parses() {
        let r = rl(
            r#"{"rate_limit": {"ipv4_prefix": 24, "ipv6_prefix": 56.0, "by_link": true,
               "exempt": ["198.51.100.0/24", "aws-vpce:vpce-0a1b2c3d"], "header": "X-Client-IP-Key"}}"#,
        );
        assert_eq!((r.ipv4_prefix, r.ipv6_prefix, r.by_link), (24, 56, true));
        assert_eq!(r.header.as_deref(), Some("x-client-ip-key"));
        assert_eq!(
            r.key(Some("198.51.100.1".parse().unwrap()), None),
            Keying::Exempt
        );
        assert!(!r.exempt_links.is_empty());
    }

    #[test]
    fn prefixes_outside_their_ranges_are_refused() {
        for (json, want) in [
            (
                r#"{"ipv4_prefix": 7}"#,
                "rate_limit.ipv4_prefix: 7 is outside 8–32",
            ),
            (
                r#"{"ipv4_prefix": 33}"#,
                "rate_limit.ipv4_prefix: 33 is outside 8–32",
            ),
            (
                r#"{"ipv4_prefix": -1}"#,
                "rate_limit.ipv4_prefix: -1 is outside 8–32",
            ),
            (
                r#"{"ipv6_prefix": 15}"#,
                "rate_limit.ipv6_prefix: 15 is outside 16–128",
            ),
            (
                r#"{"ipv6_prefix": 129}"#,
                "rate_limit.ipv6_prefix: 129 is outside 16–128",
            ),
            (
                r#"{"ipv6_prefix": 300}"#,
                "rate_limit.ipv6_prefix: 300 is outside 16–128",
            ),
            (
                r#"{"ipv4_prefix": "24"}"#,
                "rate_limit.ipv4_prefix: \"24\" is not an integer",
            ),
            (
                r#"{"ipv6_prefix": 64.5}"#,
                "rate_limit.ipv6_prefix: 64.5 is not an integer",
            ),
        ] {
            assert_eq!(error(&format!(r#"{{"rate_limit": {json}}}"#)), want);
        }
    }

    #[test]
    fn a_bad_exempt_entry_is_refused() {
        assert_eq!(
            error(r#"{"rate_limit": {"exempt": ["10.0.0.0/8", "10.0.0.300"]}}"#),
            "rate_limit.exempt[1]: \"10.0.0.300\" is not an IP address or CIDR"
        );
        assert_eq!(
            error(r#"{"rate_limit": {"exempt": "10.0.0.0/8"}}"#),
            "rate_limit.exempt: \"10.0.0.0/8\" is not a list"
        );
        assert!(
            error(r#"{"rate_limit": {"exempt": ["aws-vpce:vpce-XYZ"]}}"#)
                .starts_with("rate_limit.exempt[0]: \"aws-vpce:vpce-XYZ\"")
        );
        assert!(error(r#"{"rate_limit": {"exempt": ["source:partners"]}}"#)
            .starts_with("rate_limit.exempt[0]: \"source:partners\" names no source"));
    }

    #[test]
    fn an_exempt_source_exempts_its_addresses_once_bound_and_nobody_while_unavailable() {
        use crate::bind::{bind, Slot};
        use crate::config::parse_sourced;
        use crate::ipset::{parse_net, IpSet};
        let doc = r#"{"sources": {"partners": {"cluster": "lists", "authority": "lists.example",
                        "path": "/p.txt", "on_unavailable": "refuse"}},
                      "rate_limit": {"exempt": ["192.0.2.1", "source:partners"]}}"#;
        let (template, plan, _) = parse_sourced(doc.as_bytes()).unwrap();
        assert_eq!(plan.bindings[0].slot, Slot::RateLimitExempt);
        let ip = |s: &str| Some(s.parse().unwrap());
        let list = IpSet::from_nets([parse_net("198.51.100.0/24").unwrap().0]);
        let bound = bind(&template, &plan, &[Some(&list)]);
        let rl = bound.rate_limit.as_ref().unwrap();
        assert_eq!(rl.key(ip("198.51.100.7"), None), Keying::Exempt);
        assert_eq!(rl.key(ip("192.0.2.1"), None), Keying::Exempt);
        // Unavailable: its addresses are keyed; the configured entries stay exempt.
        let unbound = bind::<IpSet>(&template, &plan, &[None]);
        let rl = unbound.rate_limit.as_ref().unwrap();
        assert!(matches!(rl.key(ip("198.51.100.7"), None), Keying::Keyed(_)));
        assert_eq!(rl.key(ip("192.0.2.1"), None), Keying::Exempt);
        assert!(!unbound.trust_unavailable);
    }

    #[test]
    fn a_bad_header_name_is_refused() {
        assert_eq!(
            error(r#"{"rate_limit": {"header": "x client key"}}"#),
            "rate_limit.header: \"x client key\" is not a valid HTTP header name"
        );
        assert!(error(r#"{"rate_limit": {"header": ":path"}}"#)
            .starts_with("rate_limit.header: \":path\" is not a valid HTTP header name"));
        assert!(error(r#"{"rate_limit": {"header": "X-Forwarded-For"}}"#)
            .contains("managed by forward.x_forwarded_for"));
        assert!(error(r#"{"rate_limit": {"header": "host"}}"#)
            .starts_with("rate_limit.header: \"host\" is not a header the filter may overwrite"));
        // A header the forward section writes the client into.
        assert!(
            error(r#"{"rate_limit": {"header": "X-Real-IP"}}"#).starts_with(
                "rate_limit.header: \"X-Real-IP\" is also written by the forward section"
            )
        );
        assert!(error(
            r#"{"forward": {"link_header": "x-link"}, "rate_limit": {"header": "x-link"}}"#
        )
        .contains("also written by the forward section"));
    }

    #[test]
    fn the_key_header_is_removed_in_every_spelling_and_never_stripped() {
        use crate::testutil::headers as h;
        let (p, _) = parse(br#"{"rate_limit": {"header": "X-Client-IP"}}"#).unwrap();
        // x-client-ip is in the default forward.strip; the filter writes it now.
        assert!(!p.forwarding.strip.contains(&"x-client-ip".to_string()));
        let lines = h(&[
            ("x_client_ip", "1"),
            ("X-CLIENT-IP", "2"),
            ("x-client-ip", "3"),
        ]);
        assert_eq!(
            p.forwarding.removals(&lines),
            ["x_client_ip", "X-CLIENT-IP"]
        );
        // Also when nothing else is sanitised: the request's lines are read for it.
        let (quiet, _) = parse(
            br#"{"forward": {"headers": [], "strip": []}, "rate_limit": {"header": "x-key"}}"#,
        )
        .unwrap();
        assert_eq!(quiet.header_reads(), crate::policy::HeaderReads::AllLines);
        assert_eq!(quiet.forwarding.removals(&h(&[("X_Key", "1")])), ["X_Key"]);
        assert_eq!(
            error(r#"{"forward": {"strip": ["x-key"]}, "rate_limit": {"header": "X_Key"}}"#),
            "rate_limit.header: \"x_key\" is also in forward.strip: the filter writes it"
        );
    }

    #[test]
    fn by_link_must_be_a_boolean_and_other_keys_are_unknown() {
        assert_eq!(
            error(r#"{"rate_limit": {"by_link": "yes"}}"#),
            "rate_limit.by_link: \"yes\" is not true or false"
        );
        assert!(
            error(r#"{"rate_limit": {"requests_per_second": 5}}"#).starts_with(
                "rate_limit.requests_per_second: unknown key; expected one of: ipv4_prefix"
            )
        );
        assert_eq!(
            error(r#"{"rate_limit": []}"#),
            "rate_limit: [] is not an object"
        );
    }

    #[test]
    fn rate_limit_is_a_network_mode_error() {
        assert!(error(r#"{"filter_type": "network", "rate_limit": {}}"#)
            .starts_with("rate_limit: {} is not available with filter_type \"network\""));
    }

    #[test]
    fn by_link_and_exempt_identities_make_the_filter_read_identities() {
        use crate::identity::{Kind, Kinds};
        let kinds = |json: &str| parse(json.as_bytes()).unwrap().0.link.kinds;
        assert!(kinds(r#"{"rate_limit": {}}"#).is_empty());
        assert_eq!(kinds(r#"{"rate_limit": {"by_link": true}}"#), Kinds::ALL);
        assert_eq!(
            kinds(r#"{"rate_limit": {"exempt": ["gcp-psc:7"]}}"#),
            Kinds::default().with(Kind::GcpPsc)
        );
    }
}
