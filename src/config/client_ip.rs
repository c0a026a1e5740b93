//! The `client_ip` section (docs/resolution.md): whose address is the client, and where the downstream
//! address comes from.

use serde_json::Value;

use super::{err, header_name, integer, key_path, member, object, one_of, show, string};
use super::{ConfigError, Walk};
use crate::forward::X_FORWARDED_FOR;
use crate::policy::OnDownstreamFromXff;
use crate::resolve::{OnInvalid, Resolver, Trust};

const CLIENT_IP_KEYS: &[&str] = &[
    "downstream_filter_state",
    "trusted_proxies",
    "trusted_hops",
    "header",
    "on_invalid",
    "on_downstream_from_xff",
];

/// The compiled `client_ip` section.
pub(super) struct ClientIp {
    pub(super) resolver: Resolver,
    /// `downstream_filter_state`, when set.
    pub(super) filter_state: Option<String>,
    pub(super) on_downstream_from_xff: OnDownstreamFromXff,
}

impl Walk {
    /// The `client_ip` section.
    pub(super) fn client_ip(&mut self, value: &Value, path: &str) -> Result<ClientIp, ConfigError> {
        let map = object(value, path, CLIENT_IP_KEYS)?;
        let filter_state = match member(map, "downstream_filter_state") {
            None => None,
            Some(v) => {
                let p = key_path(path, "downstream_filter_state");
                let key = string(v, &p)?;
                if key.is_empty() || key.contains(|c: char| c.is_whitespace() || c.is_control()) {
                    return Err(err(&p, format!("{} is not a filter state name", show(v))));
                }
                Some(key.to_string())
            }
        };
        let proxies = member(map, "trusted_proxies");
        let hops = member(map, "trusted_hops");
        let trust = match (proxies, hops) {
            (Some(_), Some(h)) => {
                return Err(err(
                    &key_path(path, "trusted_hops"),
                    format!(
                        "{} cannot be combined with {}.trusted_proxies: choose one",
                        show(h),
                        path
                    ),
                ))
            }
            (Some(list), None) => {
                Trust::Proxies(self.ip_set(list, &key_path(path, "trusted_proxies"))?.0)
            }
            (None, Some(h)) => {
                let p = key_path(path, "trusted_hops");
                match integer(h, &p)? {
                    n @ 1..=0xFFFF_FFFF => Trust::Hops(n as u32),
                    _ => return Err(err(&p, format!("{} is not an integer ≥ 1", show(h)))),
                }
            }
            (None, None) => Trust::Nobody,
        };
        let header = match member(map, "header") {
            Some(v) => header_name(v, &key_path(path, "header"))?,
            None => X_FORWARDED_FOR.to_string(),
        };
        let on_invalid = match member(map, "on_invalid") {
            Some(v) => one_of(
                v,
                &key_path(path, "on_invalid"),
                &[
                    ("unknown", OnInvalid::Unknown),
                    ("downstream", OnInvalid::Downstream),
                ],
            )?,
            None => OnInvalid::Unknown,
        };
        let on_downstream_from_xff = match member(map, "on_downstream_from_xff") {
            Some(v) => one_of(
                v,
                &key_path(path, "on_downstream_from_xff"),
                &[
                    ("refuse", OnDownstreamFromXff::Refuse),
                    ("use", OnDownstreamFromXff::Use),
                ],
            )?,
            None => OnDownstreamFromXff::Refuse,
        };
        Ok(ClientIp {
            resolver: Resolver::new(trust, &header, on_invalid),
            filter_state,
            on_downstream_from_xff,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::policy::OnDownstreamFromXff;
    use crate::testutil::config_error as error;

    #[test]
    fn trusted_proxies_together_with_trusted_hops_is_refused() {
        assert_eq!(
            error(r#"{"client_ip": {"trusted_proxies": ["10.0.0.0/8"], "trusted_hops": 2}}"#),
            "client_ip.trusted_hops: 2 cannot be combined with client_ip.trusted_proxies: choose one"
        );
    }

    #[test]
    fn trusted_hops_below_one_is_refused() {
        assert_eq!(
            error(r#"{"client_ip": {"trusted_hops": 0}}"#),
            "client_ip.trusted_hops: 0 is not an integer ≥ 1"
        );
        assert!(error(r#"{"client_ip": {"trusted_hops": -1}}"#)
            .starts_with("client_ip.trusted_hops: -1"));
        assert!(error(r#"{"client_ip": {"trusted_hops": 1.5}}"#)
            .starts_with("client_ip.trusted_hops: 1.5 is not an integer"));
        // A whole number written as a double (Istio's pluginConfig) is fine.
        assert!(parse(br#"{"client_ip": {"trusted_hops": 2.0}}"#).is_ok());
    }

    #[test]
    fn on_downstream_from_xff_is_refuse_by_default_or_use() {
        let p = |json: &str| parse(json.as_bytes()).unwrap().0.on_downstream_from_xff;
        assert_eq!(p("{}"), OnDownstreamFromXff::Refuse);
        assert_eq!(
            p(r#"{"client_ip": {"on_downstream_from_xff": "refuse"}}"#),
            OnDownstreamFromXff::Refuse
        );
        assert_eq!(
            p(r#"{"client_ip": {"on_downstream_from_xff": "use"}}"#),
            OnDownstreamFromXff::Use
        );
        assert_eq!(
            error(r#"{"client_ip": {"on_downstream_from_xff": "allow"}}"#),
            "client_ip.on_downstream_from_xff: \"allow\" is not one of \"refuse\", \"use\""
        );
    }
}
