//! The keys a `filter_type: "network"` configuration may not hold (docs/network-mode.md): a connection has
//! no HTTP headers to resolve a client from or to write, no path, and no reply to send.

use serde_json::{Map, Value};

use super::access::RULE_KEYS;
use super::{array, err, key_path, member, object, show, ConfigError};

/// Why each key is refused in network mode, by key path (relative to the document).
const CLIENT_IP_HTTP_ONLY: &[(&str, &str)] = &[
    (
        "trusted_proxies",
        "a connection has no forwarding header: its client is the downstream address",
    ),
    (
        "trusted_hops",
        "a connection has no forwarding header: its client is the downstream address",
    ),
    ("header", "a connection has no HTTP headers"),
    (
        "on_downstream_from_xff",
        "a connection's downstream address never comes from X-Forwarded-For",
    ),
];
const ACCESS_HTTP_ONLY: &[(&str, &str)] = &[
    (
        "deny_status",
        "a refused connection is closed, it gets no HTTP reply",
    ),
    (
        "deny_body",
        "a refused connection is closed, it gets no HTTP reply",
    ),
];

fn refused(path: &str, value: &Value, why: &str) -> ConfigError {
    // An IP list was compiled while the document was read and left empty in it: not quoted.
    let shown = match value {
        Value::Array(items) if items.is_empty() => "the list".to_string(),
        other => show(other),
    };
    err(
        path,
        format!("{shown} is not available with filter_type \"network\" ({why})"),
    )
}

/// Checks a network-mode document for HTTP-only keys; the first one found is the error.
/// Sections that are not objects are left to the general walk, which reports them.
pub(super) fn check(top: &Map<String, Value>) -> Result<(), ConfigError> {
    if let Some(Value::Object(client_ip)) = member(top, "client_ip") {
        for (key, why) in CLIENT_IP_HTTP_ONLY {
            if let Some(v) = member(client_ip, key) {
                return Err(refused(&key_path("client_ip", key), v, why));
            }
        }
    }
    if let Some(Value::Object(access)) = member(top, "access") {
        for (key, why) in ACCESS_HTTP_ONLY {
            if let Some(v) = member(access, key) {
                return Err(refused(&key_path("access", key), v, why));
            }
        }
        if let Some(rules) = member(access, "rules") {
            for (i, rule) in array(rules, "access.rules")?.iter().enumerate() {
                let path = format!("access.rules[{i}]");
                let rule = object(rule, &path, RULE_KEYS)?;
                for key in ["path_prefixes", "path_case"] {
                    if let Some(v) = member(rule, key) {
                        return Err(refused(
                            &key_path(&path, key),
                            v,
                            "a connection has no path; hosts match the TLS SNI",
                        ));
                    }
                }
            }
        }
    }
    if let Some(v) = member(top, "rate_limit") {
        return Err(refused(
            "rate_limit",
            v,
            "Envoy's network rate limiters take no per-client key",
        ));
    }
    if let Some(v) = member(top, "forward") {
        return Err(refused(
            "forward",
            v,
            "a connection has no HTTP headers to write; pass the client address on with \
             the upstream PROXY protocol",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Spec §9: the configuration errors of the connection-level mode, one test per key.
    use crate::config::parse;
    use crate::testutil::config_error as error;

    fn net(rest: &str) -> String {
        format!(r#"{{"filter_type": "network", {rest}}}"#)
    }

    #[test]
    fn filter_type_is_http_or_network() {
        assert_eq!(
            error(r#"{"filter_type": "tcp"}"#),
            r#"filter_type: "tcp" is not one of "http", "network""#
        );
        assert_eq!(
            error(r#"{"filter_type": 1}"#),
            "filter_type: 1 is not a string"
        );
    }

    #[test]
    fn path_prefixes_are_a_network_mode_error() {
        let e = error(&net(
            r#""access": {"rules": [{"name": "a", "hosts": ["a.example"]},
                                    {"name": "b", "path_prefixes": ["/admin"]}]}"#,
        ));
        assert!(
            e.starts_with(r#"access.rules[1].path_prefixes: ["/admin"] is not available with filter_type "network""#),
            "{e}"
        );
    }

    #[test]
    fn client_ip_trusted_proxies_and_trusted_hops_are_network_mode_errors() {
        let e = error(&net(r#""client_ip": {"trusted_proxies": ["10.0.0.0/8"]}"#));
        assert!(
            e.starts_with(
                r#"client_ip.trusted_proxies: the list is not available with filter_type "network""#
            ),
            "{e}"
        );
        let e = error(&net(r#""client_ip": {"trusted_hops": 2}"#));
        assert!(
            e.starts_with(
                r#"client_ip.trusted_hops: 2 is not available with filter_type "network""#
            ),
            "{e}"
        );
    }

    #[test]
    fn on_downstream_from_xff_and_path_case_are_network_mode_errors() {
        let e = error(&net(r#""client_ip": {"on_downstream_from_xff": "use"}"#));
        assert!(
            e.starts_with(r#"client_ip.on_downstream_from_xff: "use" is not available with filter_type "network""#),
            "{e}"
        );
        let e = error(&net(
            r#""access": {"rules": [{"name": "a", "path_case": "insensitive"}]}"#,
        ));
        assert!(
            e.starts_with(r#"access.rules[0].path_case: "insensitive" is not available with filter_type "network""#),
            "{e}"
        );
    }

    #[test]
    fn client_ip_header_is_a_network_mode_error() {
        let e = error(&net(r#""client_ip": {"header": "x-real-ip"}"#));
        assert!(
            e.starts_with(
                r#"client_ip.header: "x-real-ip" is not available with filter_type "network""#
            ),
            "{e}"
        );
    }

    #[test]
    fn forward_is_a_network_mode_error() {
        let e = error(&net(r#""forward": {"headers": ["x-real-ip"]}"#));
        assert!(
            e.starts_with(
                r#"forward: {"headers":["x-real-ip"]} is not available with filter_type "network""#
            ),
            "{e}"
        );
        assert!(e.contains("upstream PROXY protocol"), "{e}");
        // Even an empty section: the user believes something is forwarded.
        assert!(error(&net(r#""forward": {}"#)).starts_with("forward: {}"));
    }

    #[test]
    fn deny_status_and_deny_body_are_network_mode_errors() {
        let e = error(&net(r#""access": {"deny_status": 403}"#));
        assert!(
            e.starts_with(r#"access.deny_status: 403 is not available with filter_type "network""#),
            "{e}"
        );
        let e = error(&net(r#""access": {"deny_body": "no\n"}"#));
        assert!(
            e.starts_with(
                r#"access.deny_body: "no\n" is not available with filter_type "network""#
            ),
            "{e}"
        );
    }

    #[test]
    fn the_same_keys_are_accepted_in_http_mode() {
        for doc in [
            r#"{"filter_type": "http", "client_ip": {"trusted_hops": 2, "header": "x-forwarded-for"},
                "access": {"deny_status": 451, "deny_body": "no\n",
                           "rules": [{"name": "b", "path_prefixes": ["/admin"]}]},
                "forward": {"headers": ["x-real-ip"]}}"#,
            r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]}}"#,
        ] {
            parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
        }
    }

    #[test]
    fn network_mode_accepts_lists_rules_with_hosts_modes_and_the_filter_state_name() {
        parse(
            net(r#""client_ip": {"downstream_filter_state": "my.addr"},
                   "access": {"mode": "dry_run", "match": "downstream",
                              "allow": ["10.0.0.0/8", "::ffff:192.0.2.0/120"], "deny": ["10.9.9.9"],
                              "rules": [{"name": "db", "hosts": ["db.example.com", "*.svc.example"],
                                         "allow": ["10.1.0.0/16"], "mode": "enforce"}]}"#)
            .as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn general_errors_keep_their_key_paths_in_network_mode() {
        assert_eq!(
            error(&net(r#""access": {"allow": ["10.0.0.300/8"]}"#)),
            r#"access.allow[0]: "10.0.0.300/8" is not an IP address or CIDR"#
        );
        assert_eq!(
            error(&net(r#""access": {"rules": [{"name": "x", "pathprefix": ["/"]}]}"#)),
            "access.rules[0].pathprefix: unknown key; expected one of: name, hosts, path_prefixes, path_case, allow, deny, mode"
        );
    }
}
