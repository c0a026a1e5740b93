//! Forwarding (docs/forwarding.md): the header plan, i.e. which request headers to set or remove so that
//! the app sees the resolved client and never a value the client wrote itself.

use crate::addr::{AddrText, ClientAddr};
use crate::chain::{ends_with, HeaderLines};

/// The `x-forwarded-for` header name.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// What happens to `X-Forwarded-For`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XffMode {
    /// Leave it as it came (the default).
    Keep,
    /// Add the downstream address unless it is already the last entry.
    Append,
    /// Set it to the client alone; remove it when the client is unknown.
    Replace,
}

/// The compiled `forward` section.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// Headers set to the client address (lower case).
    pub headers: Vec<String>,
    /// Header set to the client port (lower case).
    pub port_header: Option<String>,
    /// X-Forwarded-For handling.
    pub xff: XffMode,
}

impl Default for Forwarding {
    fn default() -> Self {
        Forwarding {
            headers: vec!["x-real-ip".to_string()],
            port_header: None,
            xff: XffMode::Keep,
        }
    }
}

/// One header edit. `Set` replaces every line of the header with one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderOp<'a> {
    /// Replace all lines of the header with this value.
    Set(&'a str, &'a str),
    /// Remove all lines of the header.
    Remove(&'a str),
}

/// The header edits for one request; built without allocating except for an appended
/// X-Forwarded-For value.
#[derive(Debug)]
pub struct HeaderPlan<'p> {
    forwarding: &'p Forwarding,
    client: Option<AddrText>,
    port: Option<AddrText>,
    xff: XffEdit,
}

#[derive(Debug, PartialEq, Eq)]
enum XffEdit {
    Keep,
    Remove,
    SetClient,
    Set(String),
}

impl Forwarding {
    /// Plans the edits for a request whose client (when known) and downstream address are given.
    pub fn plan(
        &self,
        client: Option<ClientAddr>,
        downstream: Option<ClientAddr>,
        headers: &HeaderLines,
    ) -> HeaderPlan<'_> {
        let xff = match (self.xff, client, downstream) {
            (XffMode::Keep, _, _) => XffEdit::Keep,
            (XffMode::Replace, Some(_), _) => XffEdit::SetClient,
            (XffMode::Replace, None, _) => XffEdit::Remove,
            (XffMode::Append, _, None) => XffEdit::Keep,
            (XffMode::Append, _, Some(ds)) if ends_with(headers, X_FORWARDED_FOR, ds) => {
                XffEdit::Keep
            }
            (XffMode::Append, _, Some(ds)) => XffEdit::Set(appended(headers, ds)),
        };
        HeaderPlan {
            forwarding: self,
            client: client.map(|c| c.text()),
            port: client.and_then(|c| c.port()).map(AddrText::port),
            xff,
        }
    }
}

/// Every X-Forwarded-For line joined with ", ", then the downstream address.
fn appended(headers: &HeaderLines, downstream: ClientAddr) -> String {
    let mut value = String::new();
    for (_, line) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(X_FORWARDED_FOR))
    {
        let line = line.trim_matches(|c| matches!(c, ' ' | '\t' | ','));
        if !line.is_empty() {
            value.push_str(line);
            value.push_str(", ");
        }
    }
    value.push_str(downstream.text().as_str());
    value
}

impl HeaderPlan<'_> {
    /// Calls `edit` once per header edit, in a fixed order: the client headers, the port header,
    /// then X-Forwarded-For.
    pub fn for_each<'a>(&'a self, mut edit: impl FnMut(HeaderOp<'a>)) {
        let client = self.client_text();
        for name in &self.forwarding.headers {
            edit(match client {
                Some(text) => HeaderOp::Set(name, text),
                None => HeaderOp::Remove(name),
            });
        }
        if let Some(name) = &self.forwarding.port_header {
            edit(match &self.port {
                Some(text) => HeaderOp::Set(name, text.as_str()),
                None => HeaderOp::Remove(name),
            });
        }
        match (&self.xff, client) {
            (XffEdit::Keep, _) => {}
            (XffEdit::Remove, _) | (XffEdit::SetClient, None) => {
                edit(HeaderOp::Remove(X_FORWARDED_FOR))
            }
            (XffEdit::SetClient, Some(text)) => edit(HeaderOp::Set(X_FORWARDED_FOR, text)),
            (XffEdit::Set(value), _) => edit(HeaderOp::Set(X_FORWARDED_FOR, value)),
        }
    }

    /// The client's address text, when known: what the client headers are set to.
    pub fn client_text(&self) -> Option<&str> {
        self.client.as_ref().map(AddrText::as_str)
    }

    /// The edits as owned pairs (tests and logs).
    pub fn to_vec(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        self.for_each(|op| {
            out.push(match op {
                HeaderOp::Set(k, v) => (k.to_string(), Some(v.to_string())),
                HeaderOp::Remove(k) => (k.to_string(), None),
            })
        });
        out
    }
}

#[cfg(test)]
mod tests {
    //! One test per rule of docs/forwarding.md, named after it.
    use super::*;
    use crate::addr::parse_socket_addr;
    use crate::testutil::headers as h;

    fn addr(s: &str) -> Option<ClientAddr> {
        Some(parse_socket_addr(s).unwrap())
    }
    fn set(k: &str, v: &str) -> (String, Option<String>) {
        (k.to_string(), Some(v.to_string()))
    }
    fn remove(k: &str) -> (String, Option<String>) {
        (k.to_string(), None)
    }

    #[test]
    fn headers_are_set_to_the_client_when_known() {
        let f = Forwarding {
            headers: vec!["x-real-ip".into(), "x-client-ip".into()],
            ..Forwarding::default()
        };
        let plan = f.plan(addr("[2001:db8::7]:5"), addr("10.0.0.1:1"), &[]);
        assert_eq!(
            plan.to_vec(),
            vec![
                set("x-real-ip", "2001:db8::7"),
                set("x-client-ip", "2001:db8::7")
            ]
        );
    }

    #[test]
    fn headers_are_removed_when_the_client_is_unknown() {
        let f = Forwarding::default();
        assert_eq!(
            f.plan(None, addr("10.0.0.1:1"), &[]).to_vec(),
            vec![remove("x-real-ip")]
        );
    }

    #[test]
    fn port_header_is_the_client_port_or_removed() {
        let f = Forwarding {
            port_header: Some("x-client-port".into()),
            ..Forwarding::default()
        };
        assert_eq!(
            f.plan(addr("1.1.1.1:4321"), None, &[]).to_vec(),
            vec![set("x-real-ip", "1.1.1.1"), set("x-client-port", "4321")]
        );
        // A client without a port (an entry without one, or port 0): removed.
        assert_eq!(
            f.plan(addr("1.1.1.1:0"), None, &[]).to_vec(),
            vec![set("x-real-ip", "1.1.1.1"), remove("x-client-port")]
        );
        assert_eq!(
            f.plan(None, None, &[]).to_vec(),
            vec![remove("x-real-ip"), remove("x-client-port")]
        );
    }

    #[test]
    fn x_forwarded_for_keep_leaves_it_as_it_came() {
        let f = Forwarding {
            headers: vec![],
            ..Forwarding::default()
        };
        let hs = h(&[("x-forwarded-for", "6.6.6.6")]);
        assert!(f
            .plan(addr("1.1.1.1"), addr("1.1.1.1:2"), &hs)
            .to_vec()
            .is_empty());
    }

    #[test]
    fn x_forwarded_for_append_adds_the_downstream_unless_already_last() {
        let f = Forwarding {
            headers: vec![],
            xff: XffMode::Append,
            ..Forwarding::default()
        };
        let hs = h(&[
            ("x-forwarded-for", "6.6.6.6, 7.7.7.7 ,"),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(
            f.plan(addr("1.1.1.1"), addr("[::ffff:10.0.0.9]:2"), &hs)
                .to_vec(),
            vec![set(
                "x-forwarded-for",
                "6.6.6.6, 7.7.7.7, 8.8.8.8, 10.0.0.9"
            )]
        );
        assert_eq!(
            f.plan(None, addr("10.0.0.9:2"), &[]).to_vec(),
            vec![set("x-forwarded-for", "10.0.0.9")]
        );
        let hs = h(&[("x-forwarded-for", "6.6.6.6, 10.0.0.9")]);
        assert!(f.plan(None, addr("10.0.0.9:2"), &hs).to_vec().is_empty());
    }

    #[test]
    fn x_forwarded_for_replace_sets_the_client_alone_or_removes() {
        let f = Forwarding {
            headers: vec![],
            xff: XffMode::Replace,
            ..Forwarding::default()
        };
        let hs = h(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            f.plan(addr("1.1.1.1:3"), addr("10.0.0.9:2"), &hs).to_vec(),
            vec![set("x-forwarded-for", "1.1.1.1")]
        );
        assert_eq!(
            f.plan(None, addr("10.0.0.9:2"), &hs).to_vec(),
            vec![remove("x-forwarded-for")]
        );
    }
}
