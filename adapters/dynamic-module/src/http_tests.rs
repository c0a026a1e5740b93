//! The per-request logic against a fake host that records every call and fails the ones a test
//! chooses (Envoy cannot be made to refuse a header write on request).

use super::*;
use crate::config::Compiled;

#[derive(Default)]
struct Fake {
    filter_state: Option<String>,
    /// Other filter state by key (the TLV object, its metadata copies).
    other_state: Vec<(String, String)>,
    source: Option<String>,
    headers: Vec<(String, String)>,
    fail_reads: bool,
    fail_writes: bool,
    state: Vec<(String, String)>,
    reply: Option<(u32, String, String)>,
    counted: Vec<usize>,
}

fn refused(call: &'static str) -> HostError {
    HostError { call, status: 0 }
}

impl StreamHost for Fake {
    fn filter_state(&mut self, key: &str) -> Option<Vec<u8>> {
        if let Some((_, v)) = self.other_state.iter().find(|(k, _)| k == key) {
            return Some(v.clone().into_bytes());
        }
        if key == "client_ip.downstream_address" {
            return self.filter_state.clone().map(String::into_bytes);
        }
        None
    }
    fn source_address(&mut self) -> Option<Vec<u8>> {
        self.source.clone().map(String::into_bytes)
    }
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostError> {
        if self.fail_reads {
            return Err(refused("get_header"));
        }
        let values: Vec<_> = self
            .headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        Ok((!values.is_empty()).then(|| values.join(",")))
    }
    fn request_header_lines(&mut self, lines: &mut Vec<(String, String)>) -> Result<(), HostError> {
        if self.fail_reads {
            return Err(refused("get_headers"));
        }
        let parts = self.headers.iter();
        crate::host::refill(lines, parts.map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        Ok(())
    }
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.fail_writes {
            return Err(refused("set_header"));
        }
        self.headers.retain(|(k, _)| k != name);
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        if self.fail_writes {
            return Err(refused("add_header"));
        }
        self.headers.push((name.to_string(), value.to_string()));
        Ok(())
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self.fail_writes {
            return Err(refused("set_header (remove)"));
        }
        self.headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn set_filter_state(&mut self, key: &str, value: &str) -> Result<(), HostError> {
        self.state.push((key.to_string(), value.to_string()));
        Ok(())
    }
    fn send_local_response(&mut self, status: u32, body: &str, details: &str) {
        self.reply = Some((status, body.to_string(), details.to_string()));
    }
    fn increment_counter(&mut self, id: usize) -> Result<(), HostError> {
        self.counted.push(id);
        Ok(())
    }
}

fn compiled(json: &str) -> Compiled {
    let mut next = 0;
    Compiled::new(json.as_bytes(), |_| {
        next += 1;
        Ok(next - 1)
    })
    .unwrap()
}

fn counted(c: &Compiled, host: &Fake) -> Vec<String> {
    host.counted
        .iter()
        .map(|&id| c.slots.names()[id].clone())
        .collect()
}

fn state<'a>(host: &'a Fake, key: &str) -> Option<&'a str> {
    host.state
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn an_allowed_request_gets_x_real_ip_and_filter_state_wasm_client_ip() {
    let c = compiled("{}");
    let mut host = Fake {
        filter_state: Some("203.0.113.7:4242".into()),
        headers: vec![("x-real-ip".into(), "6.6.6.6".into())],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Continue);
    assert!(
        host.headers
            .contains(&("x-real-ip".into(), "203.0.113.7".into())),
        "{:?}",
        host.headers
    );
    assert_eq!(state(&host, "wasm.client_ip"), Some("203.0.113.7"));
    assert_eq!(state(&host, "wasm.client_ip_decision"), None);
    assert_eq!(counted(&c, &host), ["client_ip.allowed"]);
    assert!(host.reply.is_none());
}

#[test]
fn source_address_is_read_only_without_the_filter_state_value() {
    let c = compiled("{}");
    let mut host = Fake {
        source: Some("198.51.100.2:1000".into()),
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Continue);
    assert_eq!(state(&host, "wasm.client_ip"), Some("198.51.100.2"));
}

#[test]
fn a_denied_client_is_refused_with_the_wasm_builds_reply_and_decision() {
    let c = compiled(r#"{"access": {"deny": ["203.0.113.0/24"]}}"#);
    let mut host = Fake {
        filter_state: Some("203.0.113.7:4242".into()),
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Stop);
    let (status, _, details) = host.reply.clone().unwrap();
    assert_eq!((status, details.as_str()), (403, "client_ip_filter_denied"));
    assert_eq!(state(&host, "wasm.client_ip_decision"), Some("deny"));
    assert_eq!(counted(&c, &host), ["client_ip.denied"]);
}

#[test]
fn a_header_write_envoy_refuses_refuses_the_request() {
    let c = compiled("{}");
    let mut host = Fake {
        filter_state: Some("203.0.113.7:4242".into()),
        fail_writes: true,
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Stop);
    let (status, _, details) = host.reply.clone().unwrap();
    assert_eq!(
        (status, details.as_str()),
        (500, "client_ip_filter_header_edit_failed")
    );
    assert!(counted(&c, &host).contains(&"client_ip.header_edit_failed".to_string()));
}

#[test]
fn a_header_read_envoy_refuses_refuses_the_request() {
    let c = compiled("{}");
    let mut host = Fake {
        filter_state: Some("203.0.113.7:4242".into()),
        fail_reads: true,
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Stop);
    assert_eq!(host.reply.as_ref().map(|r| r.0), Some(500));
}

/// `\x01` + "vpce-0a1b2c3d4e5f60718", base64 (the proxy_protocol filter's BASE64 encoding).
const VPCE_TLV_B64: &str = "AXZwY2UtMGExYjJjM2Q0ZTVmNjA3MTg=";
const VPCE: &str = "aws-vpce:vpce-0a1b2c3d4e5f60718";
const IDENTITY_CONFIG: &str = r#"{"access": {"allow": ["aws-vpce:vpce-0a1b2c3d4e5f60718"]}, "forward": {"link_header": "x-client-link"}}"#;

#[test]
fn an_identity_in_the_tlv_filter_state_object_admits_and_is_forwarded_and_logged() {
    let c = compiled(IDENTITY_CONFIG);
    let mut host = Fake {
        filter_state: Some("198.51.100.20:4242".into()),
        other_state: vec![(
            "envoy.network.proxy_protocol.tlv".into(),
            format!(r#"{{"aws_vpce_id":"{VPCE_TLV_B64}"}}"#),
        )],
        headers: vec![("x-client-link".into(), "aws-vpce:forged".into())],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Continue);
    assert_eq!(state(&host, "wasm.client_link"), Some(VPCE));
    assert_eq!(
        host.headers
            .iter()
            .filter(|(k, _)| k == "x-client-link")
            .collect::<Vec<_>>(),
        [&("x-client-link".to_string(), VPCE.to_string())]
    );
}

#[test]
fn an_identity_from_the_metadata_copy_counts_when_the_tlv_object_lacks_it() {
    let c = compiled(IDENTITY_CONFIG);
    let mut host = Fake {
        filter_state: Some("198.51.100.20:4242".into()),
        other_state: vec![
            ("envoy.network.proxy_protocol.tlv".into(), "{}".into()),
            ("client_ip.aws_vpce_id".into(), VPCE_TLV_B64.into()),
        ],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Continue);
    assert_eq!(state(&host, "wasm.client_link"), Some(VPCE));
}

#[test]
fn without_an_identity_the_unlisted_address_is_refused_and_a_forged_link_header_removed() {
    let c = compiled(IDENTITY_CONFIG);
    let mut host = Fake {
        filter_state: Some("198.51.100.20:4242".into()),
        headers: vec![("x-client-link".into(), VPCE.into())],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut host, &c), Next::Stop);
    assert_eq!(state(&host, "wasm.client_link"), None);
    let mut admitted = Fake {
        filter_state: Some("198.51.100.20:4242".into()),
        headers: vec![("x-client-link".into(), VPCE.into())],
        ..Fake::default()
    };
    let open = compiled(
        r#"{"access": {"deny": ["aws-vpce:vpce-0a1b2c3d4e5f60718"]}, "forward": {"link_header": "x-client-link"}}"#,
    );
    assert_eq!(request_headers(&mut admitted, &open), Next::Continue);
    assert!(
        admitted.headers.iter().all(|(k, _)| k != "x-client-link"),
        "{:?}",
        admitted.headers
    );
}

#[test]
fn a_request_sees_only_its_own_lines_not_the_previous_requests_on_the_worker() {
    let c = compiled(r#"{"client_ip": {"trusted_proxies": ["127.0.0.0/8"]}}"#);
    let mut first = Fake {
        filter_state: Some("127.0.0.1:4242".into()),
        headers: vec![
            ("user-agent".into(), "a-long-user-agent-string".into()),
            ("x-forwarded-for".into(), "203.0.113.7".into()),
        ],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut first, &c), Next::Continue);
    assert_eq!(state(&first, "wasm.client_ip"), Some("203.0.113.7"));
    // The second request, on the same thread, has fewer and shorter lines and no
    // X-Forwarded-For: a line of the first (kept for reuse) would resolve its client.
    let mut second = Fake {
        filter_state: Some("127.0.0.1:4243".into()),
        headers: vec![("ua".into(), "b".into())],
        ..Fake::default()
    };
    assert_eq!(request_headers(&mut second, &c), Next::Continue);
    assert_eq!(state(&second, "wasm.client_ip"), Some("127.0.0.1"));
    assert_eq!(
        second.headers,
        [
            ("ua".to_string(), "b".to_string()),
            ("x-real-ip".to_string(), "127.0.0.1".to_string())
        ]
    );
}
