//! The connection-level mode (docs/network-mode.md): the same policy loaded as a network filter
//! (`envoy.filters.network.wasm`, Istio `WasmPlugin` `type: NETWORK`) decides once per
//! connection, from the downstream address alone (a connection has no HTTP headers), with the
//! TLS SNI in place of the request's host for rules' `hosts`.
//!
//! Which mode a configuration is for is one setting, the top-level `filter_type`
//! (`"http"`, the default, or `"network"`): [`crate::filter_type::FilterType`] (a module below
//! both the policy and this one).

use crate::access::Verdict;
use crate::identity::Link;
use crate::policy::{Decision, Downstream, Policy};

/// What the filter knows of a new connection.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    /// Who opened it (the PROXY protocol source, or the TCP peer).
    pub downstream: Downstream,
    /// The TLS SNI (`connection.requested_server_name`); empty when the client sent none or
    /// the connection is not TLS.
    pub server_name: &'a str,
    /// Its private-link identity (docs/private-link.md), when the configuration reads one.
    pub link: Link,
}

impl Policy {
    /// Decides a connection: the client is the downstream address (no header is read, so
    /// nothing is ever invalid); the first rule whose `hosts` take in the SNI (a rule without
    /// `hosts` takes in every connection) decides with its lists and mode, else the top level.
    /// `match` makes no difference here: client and downstream are the same address.
    pub fn decide_connection(&self, connection: &Connection<'_>) -> Decision {
        let addr = connection.downstream.addr;
        let ip = addr.map(|a| a.ip());
        // SNI carries no port; a trailing dot is dropped as for an authority.
        let identity = connection.link.identity.as_ref();
        let (mut verdict, rule) =
            self.access
                .decide_linked(ip, ip, identity, connection.server_name, "");
        // A list naming a source that is unavailable with `on_unavailable: "refuse"` refuses
        // the connection (closed, as any refusal). `trusted_proxies` is an error in this mode.
        let unavailable = self.access.reads_unavailable(rule);
        if unavailable {
            verdict = self.unavailable_verdict(rule);
        }
        Decision {
            client: addr,
            downstream: connection.downstream,
            invalid: false,
            verdict,
            rule,
            link: connection.link,
            unavailable,
            unverified_downstream: false,
        }
    }

    /// Whether a connection's decision can depend on its TLS SNI: some rule has `hosts`. When
    /// not, the adapter does not read it (a host call per connection saved).
    pub fn reads_server_name(&self) -> bool {
        self.access.rules.iter().any(|r| !r.hosts.is_empty())
    }

    /// Whether a connection with this decision is closed (an enforced refusal).
    pub fn closes(decision: &Decision) -> bool {
        decision.verdict == Verdict::Deny
    }
}

#[cfg(test)]
mod tests {
    //! Spec §9, one test per rule.
    use super::*;
    use crate::config::parse;
    use crate::filter_type::FilterType;
    use crate::policy::Origin;

    fn network(json: &str) -> Policy {
        let (policy, _) = parse(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(policy.filter_type, FilterType::Network);
        policy
    }

    fn decide(policy: &Policy, downstream: &str, sni: &str) -> Decision {
        policy.decide_connection(&Connection {
            downstream: Downstream::from_filter_state(downstream),
            server_name: sni,
            link: Link::default(),
        })
    }

    #[test]
    fn filter_type_defaults_to_http_and_network_is_one_setting() {
        assert_eq!(parse(b"").unwrap().0.filter_type, FilterType::Http);
        assert_eq!(
            parse(br#"{"filter_type": "http"}"#).unwrap().0.filter_type,
            FilterType::Http
        );
        network(r#"{"filter_type": "network"}"#);
    }

    #[test]
    fn the_client_is_the_downstream_address() {
        let policy =
            network(r#"{"filter_type": "network", "access": {"allow": ["203.0.113.0/24"]}}"#);
        let d = decide(&policy, "203.0.113.7:4000", "");
        assert_eq!(d.client, d.downstream.addr);
        assert_eq!(d.client.unwrap().to_string(), "203.0.113.7");
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(!d.invalid);
        assert_eq!(
            decide(&policy, "198.51.100.1:4000", "").verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn lists_apply_to_v4_v6_and_mapped_addresses_alike() {
        let policy = network(
            r#"{"filter_type": "network",
                "access": {"allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.66"]}}"#,
        );
        assert_eq!(decide(&policy, "203.0.113.7:1", "").verdict, Verdict::Allow);
        assert_eq!(
            decide(&policy, "[2001:db8::7]:1", "").verdict,
            Verdict::Allow
        );
        // A mapped address is its IPv4 address, in allow and in deny.
        assert_eq!(
            decide(&policy, "[::ffff:203.0.113.7]:1", "").verdict,
            Verdict::Allow
        );
        assert_eq!(
            decide(&policy, "[::ffff:203.0.113.66]:1", "").verdict,
            Verdict::Deny
        );
        assert_eq!(
            decide(&policy, "[2001:db9::1]:1", "").verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn an_unknown_downstream_is_refused_under_an_allow_list() {
        let policy = network(r#"{"filter_type": "network", "access": {"allow": ["10.0.0.0/8"]}}"#);
        let unknown = Downstream::read(None, || None);
        assert_eq!(unknown.origin, Origin::Missing);
        let d = policy.decide_connection(&Connection {
            downstream: unknown,
            server_name: "",
            link: Link::default(),
        });
        assert_eq!((d.client, d.verdict), (None, Verdict::Deny));
        let open = network(r#"{"filter_type": "network", "access": {"deny": ["10.0.0.0/8"]}}"#);
        let d = open.decide_connection(&Connection {
            downstream: unknown,
            server_name: "",
            link: Link::default(),
        });
        assert_eq!(d.verdict, Verdict::Allow);
    }

    #[test]
    fn rules_hosts_match_the_tls_sni() {
        let policy = network(
            r#"{"filter_type": "network", "access": {"allow": ["0.0.0.0/0"],
                "rules": [{"name": "admin", "hosts": ["admin.example.com"], "allow": ["10.20.0.0/16"]},
                          {"name": "internal", "hosts": ["*.internal.example.com"], "deny": ["10.20.0.0/16"]}]}}"#,
        );
        let d = decide(&policy, "203.0.113.7:1", "admin.example.com");
        assert_eq!(
            (d.verdict, policy.rule_name(&d)),
            (Verdict::Deny, Some("admin"))
        );
        let d = decide(&policy, "10.20.1.1:1", "ADMIN.example.com.");
        assert_eq!(
            (d.verdict, policy.rule_name(&d)),
            (Verdict::Allow, Some("admin"))
        );
        let d = decide(&policy, "10.20.1.1:1", "db.internal.example.com");
        assert_eq!(
            (d.verdict, policy.rule_name(&d)),
            (Verdict::Deny, Some("internal"))
        );
        // The bare suffix, another name and no SNI at all fall to the top level.
        for sni in ["internal.example.com", "www.example.com", ""] {
            let d = decide(&policy, "10.20.1.1:1", sni);
            assert_eq!((d.verdict, d.rule), (Verdict::Allow, None), "sni {sni:?}");
        }
    }

    #[test]
    fn a_rule_without_hosts_takes_in_every_connection() {
        let policy = network(
            r#"{"filter_type": "network",
                "access": {"rules": [{"name": "all", "allow": ["10.0.0.0/8"]}]}}"#,
        );
        let d = decide(&policy, "203.0.113.7:1", "");
        assert_eq!(
            (d.verdict, policy.rule_name(&d)),
            (Verdict::Deny, Some("all"))
        );
    }

    #[test]
    fn dry_run_lets_a_refused_connection_through_and_says_so() {
        let policy = network(
            r#"{"filter_type": "network", "access": {"mode": "dry_run", "allow": ["10.0.0.0/8"],
                "rules": [{"name": "strict", "hosts": ["db.example.com"], "allow": ["10.0.0.1"], "mode": "enforce"}]}}"#,
        );
        let d = decide(&policy, "203.0.113.7:1", "");
        assert_eq!(d.verdict, Verdict::DryRunDeny);
        assert!(!Policy::closes(&d));
        let d = decide(&policy, "10.0.0.2:1", "db.example.com");
        assert_eq!(d.verdict, Verdict::Deny);
        assert!(Policy::closes(&d));
    }

    #[test]
    fn match_makes_no_difference_for_a_connection() {
        for m in ["client", "downstream"] {
            let policy = network(&format!(
                r#"{{"filter_type": "network", "access": {{"match": "{m}", "allow": ["10.0.0.0/8"]}}}}"#
            ));
            assert_eq!(decide(&policy, "10.1.1.1:1", "").verdict, Verdict::Allow);
            assert_eq!(decide(&policy, "11.1.1.1:1", "").verdict, Verdict::Deny);
        }
    }

    #[test]
    fn identity_entries_decide_connections_as_requests() {
        use crate::identity::Identity;
        let policy = network(
            r#"{"filter_type": "network",
                "access": {"allow": ["aws-vpce:vpce-0a1b2c3d4e5f60718", "10.0.0.0/8"]}}"#,
        );
        let vpce = Identity::parse_entry("aws-vpce:vpce-0a1b2c3d4e5f60718").unwrap();
        let linked = |identity| Connection {
            downstream: Downstream::from_filter_state("192.0.2.1:4000"),
            server_name: "",
            link: Link {
                identity,
                invalid: false,
            },
        };
        assert_eq!(
            policy.decide_connection(&linked(Some(vpce))).verdict,
            Verdict::Allow
        );
        assert_eq!(
            policy.decide_connection(&linked(None)).verdict,
            Verdict::Deny
        );
    }

    #[test]
    fn the_sni_is_read_only_when_a_rule_has_hosts() {
        let plain = network(
            r#"{"filter_type": "network", "access": {"allow": ["10.0.0.0/8"],
                "rules": [{"name": "any", "allow": ["192.0.2.0/24"]}]}}"#,
        );
        assert!(!plain.reads_server_name());
        // Without host rules the SNI cannot change a decision: not reading it loses nothing.
        for sni in ["", "db.example.com", "other.example.com"] {
            assert_eq!(
                decide(&plain, "192.0.2.1:1", sni),
                decide(&plain, "192.0.2.1:1", "")
            );
        }
        let by_host = network(
            r#"{"filter_type": "network",
                "access": {"rules": [{"name": "db", "hosts": ["db.example.com"], "allow": ["10.0.0.0/8"]}]}}"#,
        );
        assert!(by_host.reads_server_name());
    }
}
