//! The network filter's adapter logic against a fake Envoy: what it reads, writes, counts and
//! closes for one connection (docs/network-mode.md).

use std::collections::HashMap;

use super::*;
use client_ip_core::facts::Fact;

/// A fake connection: its filter state, remote address and SNI; records what the filter did.
#[derive(Default)]
struct Fake {
    state: HashMap<String, Vec<u8>>,
    remote: Option<String>,
    sni: Option<String>,
    written: HashMap<String, String>,
    counts: HashMap<usize, u64>,
    refuse_increment: bool,
    closed: bool,
}

impl ConnectionHost for Fake {
    fn filter_state(&mut self, key: &str) -> Option<Vec<u8>> {
        self.state.get(key).cloned()
    }
    fn remote_address(&mut self) -> Option<String> {
        self.remote.clone()
    }
    fn server_name(&mut self) -> Option<String> {
        self.sni.clone()
    }
    fn set_filter_state(&mut self, key: &str, value: &str) -> bool {
        self.written.insert(key.to_string(), value.to_string());
        true
    }
    fn increment(&mut self, id: usize, n: u64) -> bool {
        if self.refuse_increment {
            return false;
        }
        *self.counts.entry(id).or_default() += n;
        true
    }
    fn close(&mut self) {
        self.closed = true;
    }
}

/// A configuration with counters numbered in definition order; their names by id.
fn compile(json: &str) -> (NetworkConfig, Vec<String>) {
    let mut names = Vec::new();
    let config = NetworkConfig::new(json.as_bytes(), |name| {
        names.push(name.to_string());
        Some(names.len() - 1)
    })
    .unwrap_or_else(|e| panic!("{json}: {e:?}"));
    (config, names)
}

fn count(fake: &Fake, names: &[String], name: &str) -> u64 {
    let id = names.iter().position(|n| n == name).expect(name);
    fake.counts.get(&id).copied().unwrap_or(0)
}

const NETWORK: &str = r#"{"filter_type": "network",
    "access": {"allow": ["203.0.113.0/24"], "deny": ["203.0.113.66"],
               "rules": [{"name": "beta", "hosts": ["beta.example.com"], "allow": ["203.0.113.10"]}]}}"#;

fn connection(remote: &str) -> Fake {
    Fake {
        remote: Some(remote.to_string()),
        ..Fake::default()
    }
}

#[test]
fn an_allowed_connection_stays_open_and_is_recorded_and_counted() {
    let (config, names) = compile(NETWORK);
    let mut fake = connection("203.0.113.7:4000");
    assert!(!config.decide(&mut fake));
    assert!(!fake.closed);
    assert_eq!(
        fake.written
            .get(Fact::ClientIp.full_name())
            .map(String::as_str),
        Some("203.0.113.7")
    );
    assert!(!fake.written.contains_key(Fact::Decision.full_name()));
    assert_eq!(count(&fake, &names, "client_ip.allowed"), 1);
    assert_eq!(count(&fake, &names, "client_ip.denied"), 0);
}

#[test]
fn a_refused_connection_is_closed_with_the_decision_in_filter_state() {
    let (config, names) = compile(NETWORK);
    let mut fake = connection("[2001:db8::1]:4000");
    assert!(config.decide(&mut fake));
    assert!(fake.closed);
    assert_eq!(
        fake.written
            .get(Fact::ClientIp.full_name())
            .map(String::as_str),
        Some("2001:db8::1")
    );
    assert_eq!(
        fake.written
            .get(Fact::Decision.full_name())
            .map(String::as_str),
        Some("deny")
    );
    assert_eq!(count(&fake, &names, "client_ip.denied"), 1);
}

#[test]
fn the_downstream_filter_state_comes_before_the_remote_address() {
    let (config, _) = compile(NETWORK);
    let mut fake = connection("198.51.100.1:4000");
    fake.state.insert(
        "client_ip.downstream_address".to_string(),
        b"203.0.113.9:5000".to_vec(),
    );
    assert!(!config.decide(&mut fake));
    assert_eq!(
        fake.written
            .get(Fact::ClientIp.full_name())
            .map(String::as_str),
        Some("203.0.113.9")
    );
}

#[test]
fn the_sni_selects_the_rule_and_names_it() {
    let (config, _) = compile(NETWORK);
    let mut fake = connection("203.0.113.7:4000");
    fake.sni = Some("beta.example.com".to_string());
    assert!(config.decide(&mut fake));
    assert_eq!(
        fake.written.get(Fact::Rule.full_name()).map(String::as_str),
        Some("beta")
    );
}

#[test]
fn without_an_address_the_connection_is_refused() {
    let (config, _) = compile(NETWORK);
    let mut fake = Fake::default();
    assert!(config.decide(&mut fake));
    assert!(fake.closed);
}

#[test]
fn an_http_configuration_closes_every_connection() {
    let (config, _) = compile(r#"{"access": {"allow": ["0.0.0.0/0"]}}"#);
    let mut fake = connection("203.0.113.7:4000");
    assert!(config.decide(&mut fake));
    assert!(fake.closed);
    assert!(fake.written.is_empty());
}

#[test]
fn a_count_envoy_refuses_is_handed_over_with_the_next_connection() {
    let (config, names) = compile(NETWORK);
    let mut first = connection("203.0.113.7:4000");
    first.refuse_increment = true;
    config.decide(&mut first);
    let mut second = connection("203.0.113.8:4000");
    config.decide(&mut second);
    assert_eq!(count(&second, &names, "client_ip.allowed"), 2);
}

#[test]
fn a_configuration_error_carries_its_key_path() {
    let err = NetworkConfig::new(br#"{"access": {"allow": ["300.0.0.1"]}}"#, |_| Some(0))
        .err()
        .expect("refused");
    assert!(
        err.0.starts_with("invalid configuration: access.allow"),
        "{err:?}"
    );
}

#[test]
fn sources_are_refused_by_the_native_network_filter() {
    let json = r#"{"filter_type": "network",
        "sources": {"corp": {"cluster": "lists", "authority": "lists", "path": "/corp.txt"}},
        "access": {"allow": ["source:corp"]}}"#;
    let err = NetworkConfig::new(json.as_bytes(), |_| Some(0))
        .err()
        .expect("refused");
    assert!(err.0.contains("cannot fetch lists"), "{err:?}");
}
