//! Which kind of Envoy filter a configuration is for (docs/network-mode.md), the top-level `filter_type`
//! (`"http"`, the default, or `"network"`): [`FilterType`]. A configuration loaded as the other
//! kind of filter than it says is a [`Mismatch`]: the adapter refuses every request or
//! connection it sees, it never lets one through unchecked.
//!
//! Vocabulary shared by the configuration, the policy and the connection mode: it depends on
//! nothing else in the crate.

/// The kind of Envoy filter a configuration is written for (the top-level `filter_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FilterType {
    /// `envoy.filters.http.wasm` (Istio `WasmPlugin` `type: HTTP`, its default): one decision
    /// per request.
    #[default]
    Http,
    /// `envoy.filters.network.wasm` (Istio `WasmPlugin` `type: NETWORK`): one decision per
    /// connection.
    Network,
}

impl FilterType {
    /// The setting's value as written in the configuration: `http` or `network`.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterType::Http => "http",
            FilterType::Network => "network",
        }
    }

    /// Checks the configured type against the kind of filter Envoy loaded the module as.
    pub fn check_loaded_as(self, loaded_as: FilterType) -> Result<(), Mismatch> {
        if self == loaded_as {
            Ok(())
        } else {
            Err(Mismatch {
                configured: self,
                loaded_as,
            })
        }
    }
}

/// A configuration for one kind of filter loaded as the other: every request or connection is
/// refused (never let through unchecked), with one error log line per configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// What the configuration's `filter_type` says.
    pub configured: FilterType,
    /// What Envoy loaded the module as.
    pub loaded_as: FilterType,
}

impl Mismatch {
    /// The error log line, naming the setting and both kinds.
    pub fn message(&self) -> String {
        let envoy_name = |t: FilterType| match t {
            FilterType::Http => "an HTTP filter (envoy.filters.http.wasm)",
            FilterType::Network => "a network filter (envoy.filters.network.wasm)",
        };
        format!(
            "filter_type: \"{}\" does not match how Envoy loaded this module, as {}; \
             refusing every {} until the configuration or the filter type is fixed",
            self.configured.as_str(),
            envoy_name(self.loaded_as),
            match self.loaded_as {
                FilterType::Http => "request (500)",
                FilterType::Network => "connection (closed)",
            }
        )
    }

    /// The body of the local reply that refuses a request in an HTTP filter.
    pub const HTTP_BODY: &'static str =
        "client-ip-filter: configured for a network filter (filter_type), loaded as an HTTP filter\n";
    /// The HTTP status of that reply: the proxy's configuration is at fault.
    pub const HTTP_STATUS: u32 = 500;
    /// `%RESPONSE_CODE_DETAILS%` of that reply.
    pub const HTTP_DETAILS: &'static str = "client_ip_filter_type_mismatch";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mode_mismatch_is_detected_in_both_directions() {
        assert_eq!(FilterType::Http.check_loaded_as(FilterType::Http), Ok(()));
        assert_eq!(
            FilterType::Network.check_loaded_as(FilterType::Network),
            Ok(())
        );
        let m = FilterType::Http
            .check_loaded_as(FilterType::Network)
            .unwrap_err();
        assert!(
            m.message().contains("filter_type: \"http\""),
            "{}",
            m.message()
        );
        assert!(m.message().contains("envoy.filters.network.wasm"));
        let m = FilterType::Network
            .check_loaded_as(FilterType::Http)
            .unwrap_err();
        assert!(m.message().contains("filter_type: \"network\""));
        assert!(m.message().contains("envoy.filters.http.wasm"));
        assert!(m.message().contains("request (500)"));
    }
}
