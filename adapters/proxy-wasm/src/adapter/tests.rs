//! The contexts' logic against a fake host that fails the calls a test chooses: the paths Envoy
//! cannot be made to take (it does not refuse a header read or a local reply on request). Each
//! test names the failing call and what the filter must do then.

use std::collections::HashMap;

use proxy_wasm::types::Action;

use super::compiled::Compiled;
use super::http::request_headers;
use super::network::Connection;
use crate::host::{HostError, PropertyPath, StreamHost};
use client_ip_core::config;

/// `Status::InternalFailure`.
const FAILURE: HostError = HostError(10);

/// A host with properties and request headers, recording every call; a call named in `fail`
/// returns [`FAILURE`] (and changes nothing).
#[derive(Default)]
struct Fake {
    properties: HashMap<Vec<u8>, Vec<u8>>,
    headers: Vec<(String, String)>,
    fail: Vec<&'static str>,
    /// Every call, in order: its name and its main argument.
    calls: Vec<(&'static str, String)>,
    /// The local reply sent: status, body, details.
    reply: Option<(u32, String, String)>,
    closed: bool,
}

impl Fake {
    /// A connection from `downstream` (the set_filter_state value) with `headers`.
    fn with(downstream: &str, headers: &[(&str, &str)]) -> Fake {
        let mut fake = Fake::default();
        fake.properties.insert(
            b"filter_state\0client_ip.downstream_address".to_vec(),
            downstream.as_bytes().to_vec(),
        );
        fake.headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fake
    }

    fn failing(mut self, call: &'static str) -> Fake {
        self.fail.push(call);
        self
    }

    fn call(&mut self, name: &'static str, arg: String) -> Result<(), HostError> {
        self.calls.push((name, arg));
        if self.fail.contains(&name) {
            Err(FAILURE)
        } else {
            Ok(())
        }
    }

    fn made(&self, name: &str) -> Vec<&str> {
        self.calls
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn path_text(path: &PropertyPath) -> String {
    String::from_utf8_lossy(path.as_bytes()).replace('\0', ".")
}

impl StreamHost for Fake {
    fn property(&mut self, path: &PropertyPath) -> Result<Option<Vec<u8>>, HostError> {
        self.call("property", path_text(path))?;
        Ok(self.properties.get(path.as_bytes()).cloned())
    }

    fn set_property(&mut self, path: &PropertyPath, value: &[u8]) -> Result<(), HostError> {
        let text = String::from_utf8_lossy(value);
        self.call("set_property", format!("{} = {text}", path_text(path)))
    }

    fn request_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.call("request_header", name.to_string())?;
        Ok(self.header(name).map(|v| v.as_bytes().to_vec()))
    }

    fn request_header_lines(&mut self) -> Result<Vec<(String, String)>, HostError> {
        self.call("request_header_lines", String::new())?;
        Ok(self.headers.clone())
    }

    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        self.call("set_request_header", format!("{name}: {value}"))?;
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }

    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.call("remove_request_header", name.to_string())?;
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }

    fn send_local_response(
        &mut self,
        status: u32,
        body: &[u8],
        _headers: &[u8],
        details: &str,
    ) -> Result<(), HostError> {
        self.call("send_local_response", status.to_string())?;
        let body = String::from_utf8_lossy(body).into_owned();
        self.reply = Some((status, body, details.to_string()));
        Ok(())
    }

    fn close_downstream(&mut self) -> Result<(), HostError> {
        self.call("close_downstream", String::new())?;
        self.closed = true;
        Ok(())
    }
}

fn compiled(json: &str) -> Compiled {
    let (policy, _) = config::parse(json.as_bytes()).expect("valid configuration");
    Compiled::unregistered(policy)
}

/// XFF is read (the downstream is a trusted proxy), and the allow list decides.
const TRUSTED: &str = r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"]},
    "access": {"allow": ["203.0.113.0/24"]}}"#;

#[test]
fn a_request_whose_headers_cannot_be_read_is_refused_with_500_and_never_goes_on() {
    let c = compiled(TRUSTED);
    let mut host = Fake::with("10.0.0.1:5000", &[("x-forwarded-for", "203.0.113.5")])
        .failing("request_header")
        .failing("request_header_lines");
    let action = request_headers(&mut host, Some(&c));
    assert_eq!(action, Action::Pause);
    let (status, body, _) = host.reply.clone().expect("a local reply");
    assert_eq!(status, 500);
    assert_eq!(body, "client-ip-filter: cannot read request headers\n");
    assert!(
        host.made("set_request_header").is_empty(),
        "{:?}",
        host.calls
    );
    assert!(host.made("set_property").is_empty(), "{:?}", host.calls);
    assert!(
        c.metrics.pending().is_empty(),
        "an undecided request counted"
    );
}

#[test]
fn the_same_request_with_readable_headers_is_decided_by_its_forwarded_client() {
    // The control of the test above: the fake itself lets a request through.
    let c = compiled(TRUSTED);
    let mut host = Fake::with("10.0.0.1:5000", &[("x-forwarded-for", "203.0.113.5")]);
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Continue);
    assert_eq!(host.reply, None);
    assert_eq!(host.header("x-real-ip"), Some("203.0.113.5"));
}

#[test]
fn a_refusal_whose_local_reply_fails_still_stops_the_request() {
    let c = compiled(r#"{"access": {"allow": ["203.0.113.0/24"]}}"#);
    let mut host = Fake::with("198.51.100.1:5000", &[]).failing("send_local_response");
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Pause);
    assert_eq!(host.made("send_local_response"), ["403"]);
    assert!(
        host.made("set_request_header").is_empty(),
        "{:?}",
        host.calls
    );
    // Decided and recorded like any refusal.
    assert!(host
        .made("set_property")
        .iter()
        .any(|s| s.contains("client_ip_decision") && s.ends_with("= deny")));
    assert_eq!(
        c.metrics.pending(),
        [("client_ip.denied".to_string(), 1)],
        "the refusal is counted"
    );
}

#[test]
fn a_request_without_a_configuration_is_refused_with_500_even_if_the_reply_fails() {
    let mut host = Fake::with("203.0.113.5:5000", &[]).failing("send_local_response");
    assert_eq!(request_headers(&mut host, None), Action::Pause);
    assert_eq!(host.made("send_local_response"), ["500"]);
}

#[test]
fn a_downstream_address_that_cannot_be_read_leaves_the_client_unknown_and_an_allow_list_refuses() {
    let c = compiled(r#"{"access": {"allow": ["203.0.113.0/24"]}}"#);
    let mut host = Fake::with("203.0.113.5:5000", &[]).failing("property");
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Pause);
    assert_eq!(host.reply.as_ref().map(|r| r.0), Some(403));
}

#[test]
fn a_filter_state_write_that_fails_does_not_stop_an_allowed_request() {
    let c = compiled(r#"{"access": {"allow": ["203.0.113.0/24"]}}"#);
    let mut host = Fake::with("203.0.113.5:5000", &[]).failing("set_property");
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Continue);
    assert_eq!(host.header("x-real-ip"), Some("203.0.113.5"));
}

#[test]
fn a_request_whose_header_set_fails_is_refused_with_500_counted_and_never_goes_on() {
    let c = compiled(r#"{"access": {"allow": ["203.0.113.0/24"]}}"#);
    let mut host =
        Fake::with("203.0.113.5:5000", &[("x-real-ip", "6.6.6.6")]).failing("set_request_header");
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Pause);
    let (status, _, details) = host.reply.clone().expect("a local reply");
    assert_eq!(
        (status, details.as_str()),
        (500, "client_ip_filter_header_edit_failed")
    );
    // The forged value is still on the request: that is why it must not go on.
    assert_eq!(host.header("x-real-ip"), Some("6.6.6.6"));
    let mut pending = c.metrics.pending();
    pending.sort();
    assert_eq!(
        pending,
        [
            ("client_ip.allowed".to_string(), 1),
            ("client_ip.header_edit_failed".to_string(), 1)
        ]
    );
}

#[test]
fn a_request_whose_header_removal_fails_is_refused_before_any_other_edit() {
    let c = compiled("{}");
    let mut host = Fake::with("203.0.113.5:5000", &[("x_real_ip", "6.6.6.6")])
        .failing("remove_request_header");
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Pause);
    assert_eq!(host.made("remove_request_header"), ["x_real_ip"]);
    assert!(
        host.made("set_request_header").is_empty(),
        "{:?}",
        host.calls
    );
    assert_eq!(host.reply.as_ref().map(|r| r.0), Some(500));
}

#[test]
fn the_default_request_reads_its_header_lines_once_and_removes_only_what_it_carries() {
    // The control of the two tests above, and the default's host calls.
    let c = compiled("");
    let mut host = Fake::with(
        "203.0.113.5:5000",
        &[
            (":path", "/"),
            ("x_real_ip", "6.6.6.6"),
            ("forwarded", "for=x"),
        ],
    );
    assert_eq!(request_headers(&mut host, Some(&c)), Action::Continue);
    assert_eq!(host.made("request_header_lines").len(), 1);
    assert!(host.made("request_header").is_empty());
    assert_eq!(
        host.made("remove_request_header"),
        ["x_real_ip", "forwarded"]
    );
    assert_eq!(host.made("set_request_header"), ["x-real-ip: 203.0.113.5"]);
    let mut plain = Fake::with("203.0.113.5:5000", &[(":path", "/")]);
    assert_eq!(request_headers(&mut plain, Some(&c)), Action::Continue);
    let names: Vec<&str> = plain.calls.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "property",
            "request_header_lines",
            "set_property",
            "set_request_header"
        ]
    );
}

const NETWORK: &str = r#"{"filter_type": "network", "access": {"allow": ["203.0.113.0/24"]}}"#;

#[test]
fn a_refused_connection_whose_close_fails_stays_paused() {
    let c = std::rc::Rc::new(compiled(NETWORK));
    let mut conn = Connection::new(Some(c));
    let mut host = Fake::with("198.51.100.1:5000", &[]).failing("close_downstream");
    assert_eq!(conn.decide(&mut host), Action::Pause);
    assert_eq!(host.made("close_downstream").len(), 1);
    assert!(conn.is_refused(), "its data would go on");
}

#[test]
fn an_allowed_connection_goes_on() {
    let c = std::rc::Rc::new(compiled(NETWORK));
    let mut conn = Connection::new(Some(c));
    let mut host = Fake::with("203.0.113.5:5000", &[]);
    assert_eq!(conn.decide(&mut host), Action::Continue);
    assert!(!conn.is_refused() && !host.closed);
}
