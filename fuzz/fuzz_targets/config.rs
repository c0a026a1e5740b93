//! The JSON configuration: `config::parse` on any bytes. Never panics; the result is a policy
//! (which then decides a few requests without panicking) or one configuration error naming a key
//! path, printable as one log line.
#![no_main]

use client_ip_core::config::parse;
use client_ip_core::policy::{Downstream, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        Ok((policy, warnings)) => {
            for w in &warnings {
                assert!(!w.to_string().is_empty());
            }
            let h = |lines: &[(&str, &str)]| -> Vec<(String, String)> {
                lines
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            let requests = [
                (
                    "10.0.0.2:1",
                    h(&[
                        (":authority", "admin.example.com"),
                        (":path", "/admin/x"),
                        ("x-forwarded-for", "203.0.113.5, 10.0.0.3"),
                    ]),
                ),
                (
                    "203.0.113.66:5",
                    h(&[
                        (":authority", "a.internal.example.com:80"),
                        (":path", "/"),
                        ("x-real-ip", "2001:db8::1"),
                    ]),
                ),
                (
                    "[fd00::2]:9",
                    h(&[("x-forwarded-for", "unknown, ::ffff:1.2.3.4")]),
                ),
            ];
            for (ds, headers) in &requests {
                let request = Request {
                    downstream: Downstream::from_filter_state(ds),
                    headers,
                };
                let decision = policy.decide(&request);
                let _ = policy.rule_name(&decision);
                let _ = policy.header_plan(&request, &decision).to_vec();
            }
        }
        Err(e) => {
            assert!(!e.path.is_empty() && !e.message.is_empty(), "{e:?}");
            let line = e.to_string();
            assert!(
                !line.contains(['\n', '\r']),
                "error is not one log line: {line:?}"
            );
        }
    }
});
