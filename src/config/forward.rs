//! The `forward` section (docs/forwarding.md): the headers the filter writes the client into.

use serde_json::Value;

use super::{array, err, header_name, key_path, member, object, one_of, show, ConfigError, Walk};
use crate::forward::{Forwarding, XffMode, DEFAULT_STRIP, X_FORWARDED_FOR};

const FORWARD_KEYS: &[&str] = &[
    "headers",
    "port_header",
    "x_forwarded_for",
    "link_header",
    "strip",
    "country_header",
    "asn_header",
];

/// Headers the filter will not overwrite with an address: they frame or route the request.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// A header the filter writes the client address or port into.
pub(super) fn forwarded_header_name(value: &Value, path: &str) -> Result<String, ConfigError> {
    let name = header_name(value, path)?;
    if name == X_FORWARDED_FOR {
        return Err(err(
            path,
            format!("{} is managed by forward.x_forwarded_for", show(value)),
        ));
    }
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(err(
            path,
            format!(
                "{} is not a header the filter may overwrite (it frames or routes the request)",
                show(value)
            ),
        ));
    }
    Ok(name)
}

/// `forward.link_header`: a header name the filter may write, not one of the other forwarded ones.
pub(super) fn link_header(
    section: &Value,
    path: &str,
    forwarding: &Forwarding,
) -> Result<Option<String>, ConfigError> {
    let Some(v) = section.as_object().and_then(|m| member(m, "link_header")) else {
        return Ok(None);
    };
    let p = key_path(path, "link_header");
    let name = forwarded_header_name(v, &p)?;
    if forwarding.headers.contains(&name) || forwarding.port_header.as_ref() == Some(&name) {
        return Err(err(
            &p,
            format!(
                "{} is also in {path}.headers or {path}.port_header: a header holds one thing",
                show(v)
            ),
        ));
    }
    Ok(Some(name))
}

/// `forward.strip`: header names (lower case, `_` as `-`: every spelling is removed), none of
/// them one the filter writes or frames the request with. Absent: [`DEFAULT_STRIP`] without the
/// headers the filter writes.
pub(super) fn strip(
    section: &Value,
    path: &str,
    forwarding: &Forwarding,
    link_header: Option<&str>,
) -> Result<Vec<String>, ConfigError> {
    let written = |name: &str| {
        forwarding
            .headers
            .iter()
            .any(|h| h.replace('_', "-") == name)
            || forwarding
                .port_header
                .as_ref()
                .is_some_and(|h| h.replace('_', "-") == name)
            || link_header.is_some_and(|h| h.replace('_', "-") == name)
            || [&forwarding.country_header, &forwarding.asn_header]
                .iter()
                .any(|h| h.as_ref().is_some_and(|h| h.replace('_', "-") == name))
    };
    let Some(v) = section.as_object().and_then(|m| member(m, "strip")) else {
        return Ok(DEFAULT_STRIP
            .iter()
            .filter(|h| !written(h))
            .map(|h| h.to_string())
            .collect());
    };
    let p = key_path(path, "strip");
    let mut strip: Vec<String> = Vec::new();
    for (i, item) in array(v, &p)?.iter().enumerate() {
        let ip = format!("{p}[{i}]");
        let name = forwarded_header_name(item, &ip)?.replace('_', "-");
        if written(&name) {
            return Err(err(
                &ip,
                format!(
                    "{} is written by the filter ({path}.headers, port_header or link_header): \
                     it cannot also be stripped",
                    show(item)
                ),
            ));
        }
        if strip.contains(&name) {
            return Err(err(&ip, format!("{} is listed twice", show(item))));
        }
        strip.push(name);
    }
    Ok(strip)
}

impl Walk {
    /// The `forward` section.
    pub(super) fn forward(&mut self, value: &Value, path: &str) -> Result<Forwarding, ConfigError> {
        let map = object(value, path, FORWARD_KEYS)?;
        let mut forwarding = Forwarding::default();
        if let Some(v) = member(map, "headers") {
            let p = key_path(path, "headers");
            forwarding.headers.clear();
            for (i, item) in array(v, &p)?.iter().enumerate() {
                let ip = format!("{p}[{i}]");
                let name = forwarded_header_name(item, &ip)?;
                if forwarding.headers.contains(&name) {
                    return Err(err(&ip, format!("{} is listed twice", show(item))));
                }
                forwarding.headers.push(name);
            }
        }
        if let Some(v) = member(map, "port_header") {
            let p = key_path(path, "port_header");
            let name = forwarded_header_name(v, &p)?;
            if forwarding.headers.contains(&name) {
                return Err(err(
                    &p,
                    format!(
                        "{} is also in {path}.headers: a header holds the address or the port",
                        show(v)
                    ),
                ));
            }
            forwarding.port_header = Some(name);
        }
        for key in ["country_header", "asn_header"] {
            let Some(v) = member(map, key) else {
                continue;
            };
            let p = key_path(path, key);
            let name = forwarded_header_name(v, &p)?;
            let taken = forwarding.headers.contains(&name)
                || forwarding.port_header.as_ref() == Some(&name)
                || forwarding.country_header.as_ref() == Some(&name);
            if taken {
                return Err(err(
                    &p,
                    format!(
                        "{} is also another header the filter writes: a header holds one thing",
                        show(v)
                    ),
                ));
            }
            if key == "country_header" {
                forwarding.country_header = Some(name);
            } else {
                forwarding.asn_header = Some(name);
            }
        }
        if let Some(v) = member(map, "x_forwarded_for") {
            forwarding.xff = one_of(
                v,
                &key_path(path, "x_forwarded_for"),
                &[
                    ("keep", XffMode::Keep),
                    ("append", XffMode::Append),
                    ("replace", XffMode::Replace),
                ],
            )?;
        }
        Ok(forwarding)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::testutil::config_error as error;

    #[test]
    fn strip_defaults_to_the_client_naming_headers_the_filter_does_not_write() {
        let strip = |json: &str| parse(json.as_bytes()).unwrap().0.forwarding.strip;
        let all = [
            "forwarded",
            "true-client-ip",
            "cf-connecting-ip",
            "x-cluster-client-ip",
            "x-client-ip",
            "fastly-client-ip",
        ];
        assert_eq!(strip("{}"), all);
        assert_eq!(strip(r#"{"forward": {}}"#), all);
        assert_eq!(
            strip(
                r#"{"forward": {"headers": ["x-real-ip", "True-Client-IP"], "link_header": "x-client-ip"}}"#
            ),
            [
                "forwarded",
                "cf-connecting-ip",
                "x-cluster-client-ip",
                "fastly-client-ip"
            ]
        );
        assert_eq!(
            strip(r#"{"forward": {"strip": ["X-Custom_Client", "forwarded"]}}"#),
            ["x-custom-client", "forwarded"]
        );
        assert!(strip(r#"{"forward": {"strip": []}}"#).is_empty());
    }

    #[test]
    fn bad_strip_entries_are_refused() {
        assert_eq!(
            error(r#"{"forward": {"strip": "forwarded"}}"#),
            "forward.strip: \"forwarded\" is not a list"
        );
        assert_eq!(
            error(r#"{"forward": {"strip": ["forwarded", "x y"]}}"#),
            "forward.strip[1]: \"x y\" is not a valid HTTP header name"
        );
        assert!(error(r#"{"forward": {"strip": ["x-forwarded-for"]}}"#)
            .contains("managed by forward.x_forwarded_for"));
        assert!(
            error(r#"{"forward": {"strip": ["host"]}}"#).starts_with("forward.strip[0]: \"host\"")
        );
        assert_eq!(
            error(r#"{"forward": {"strip": ["X_Real_IP"]}}"#),
            "forward.strip[0]: \"X_Real_IP\" is written by the filter (forward.headers, port_header or link_header): it cannot also be stripped"
        );
        assert!(error(r#"{"forward": {"strip": ["a-b", "A_B"]}}"#).contains("listed twice"));
    }

    #[test]
    fn bad_header_name_is_refused() {
        assert_eq!(
            error(r#"{"forward": {"headers": ["x-real-ip", "x real ip"]}}"#),
            "forward.headers[1]: \"x real ip\" is not a valid HTTP header name"
        );
        assert!(
            error(r#"{"forward": {"headers": [":authority"]}}"#).starts_with("forward.headers[0]")
        );
        assert!(error(r#"{"forward": {"port_header": ""}}"#).starts_with("forward.port_header"));
        assert!(
            error(r#"{"client_ip": {"header": "x-real-ip\n"}}"#).starts_with("client_ip.header")
        );
        assert!(error(r#"{"forward": {"headers": ["X-Forwarded-For"]}}"#)
            .contains("managed by forward.x_forwarded_for"));
        assert!(error(r#"{"forward": {"headers": ["Host"]}}"#)
            .starts_with("forward.headers[0]: \"Host\""));
        assert!(error(r#"{"forward": {"headers": ["a", "A"]}}"#).contains("listed twice"));
        assert!(
            error(r#"{"forward": {"headers": ["a"], "port_header": "a"}}"#)
                .starts_with("forward.port_header")
        );
    }
}
