//! Lists from a list server (docs/sources.md): the `sources` of a configuration, compiled once.
//!
//! - [`format`]: a fetched body → the networks it lists, or why it is refused (the JSON formats
//!   are read in one streaming pass, `json`).
//! - [`schedule`]: when to fetch next (refresh with jitter, backoff after a failure) and when a
//!   source is unavailable (never loaded, or older than `max_stale_s`).
//! - [`table`]: the compact, checked encoding in which one VM publishes a parsed list to the others.
//! - [`lease`]: which VM fetches for the whole Envoy.
//! - [`seal`]: the keyed tag on every shared value, so that other modules cannot forge them.
//! - [`machine`]: the fetch cycle as a state machine without I/O (events in, actions out).
//! - [`retire`]: when the shared values of a replaced configuration are emptied.
//! - [`mmdb`]: a MaxMind DB file → the [`geo`] table of countries and AS numbers (docs/geo.md).
//!
//! All of it is plain Rust; the adapter (`adapter/sources.rs`) only performs the machine's actions.

pub mod format;
pub mod geo;
mod json;
pub mod lease;
pub mod machine;
pub mod mmdb;
#[cfg(test)]
pub(crate) mod mmdb_tests;
pub mod retire;
pub mod schedule;
pub mod seal;
pub mod table;

/// The formats a list server's body may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One address or CIDR per line (first token); `#` and `;` start comments.
    Text,
    /// AWS `ip-ranges.json`.
    Aws,
    /// Google `cloud.json` / `goog.json`.
    Gcp,
    /// Azure Service Tags JSON.
    Azure,
    /// A MaxMind DB file (docs/geo.md): countries and AS numbers, not a list of networks.
    Mmdb,
}

impl Format {
    /// Every format, with the name the configuration uses.
    pub const ALL: [(&'static str, Format); 5] = [
        ("text", Format::Text),
        ("aws", Format::Aws),
        ("gcp", Format::Gcp),
        ("azure", Format::Azure),
        ("mmdb", Format::Mmdb),
    ];

    /// The `select` keys this format knows.
    pub fn select_keys(self) -> &'static [&'static str] {
        match self {
            Format::Text | Format::Mmdb => &[],
            Format::Aws => &["service", "region", "network_border_group"],
            Format::Gcp => &["service", "scope"],
            Format::Azure => &["name", "region", "system_service"],
        }
    }
}

/// A `select`: per key, the accepted values. An entry passes when every key matches one value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Select(pub Vec<(String, Vec<String>)>);

impl Select {
    /// Whether an entry passes, `field(key)` being its value for a select key (None: it has none).
    pub fn passes<'a>(&self, field: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0
            .iter()
            .all(|(key, values)| field(key).is_some_and(|v| values.iter().any(|a| a == v)))
    }
}

/// What a list that names an unavailable source does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnUnavailable {
    /// The source holds no address (an allow list naming it stays in force).
    Empty,
    /// A request whose decision reads such a list is refused with 503.
    Refuse,
}

/// Default `refresh_s`.
pub const DEFAULT_REFRESH_S: u32 = 300;
/// Smallest `refresh_s`.
pub const MIN_REFRESH_S: u32 = 10;
/// Default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// Default `max_bytes`: Envoy's limit on a `dispatch_http_call` response body.
pub const DEFAULT_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Default `max_entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 2_000_000;

/// `min_prefix`: the broadest network a source used in `client_ip.trusted_proxies` may list, per
/// family (a body with a broader entry is rejected: a list server cannot make every client a
/// trusted proxy that names its own address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinPrefix {
    /// Smallest IPv4 prefix length accepted (1–32).
    pub ipv4: u8,
    /// Smallest IPv6 prefix length accepted (1–128).
    pub ipv6: u8,
}

/// Default `min_prefix`: `{"ipv4": 8, "ipv6": 16}`.
pub const DEFAULT_MIN_PREFIX: MinPrefix = MinPrefix { ipv4: 8, ipv6: 16 };

/// One named source, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The name lists use in `"source:<name>"` (1–64 of `a-z 0-9 _ -`).
    pub name: String,
    /// The Envoy cluster the request goes to.
    pub cluster: String,
    /// The request's `:authority`.
    pub authority: String,
    /// The request's path (starts with `/`).
    pub path: String,
    /// How the body is read.
    pub format: Format,
    /// Which entries of a JSON format are taken.
    pub select: Select,
    /// Seconds between refreshes (≥ 10).
    pub refresh_s: u32,
    /// Timeout of one fetch, in ms.
    pub timeout_ms: u32,
    /// Largest body accepted.
    pub max_bytes: usize,
    /// Most entries accepted.
    pub max_entries: usize,
    /// What lists naming the source do while it is unavailable.
    pub on_unavailable: OnUnavailable,
    /// Seconds after the last good body at which the source becomes unavailable (None: never).
    pub max_stale_s: Option<u64>,
    /// The broadest entry accepted, applied only where the source is used as trusted proxies.
    pub min_prefix: MinPrefix,
    /// The record fields an `mmdb` source reads (`country_field`, `asn_field`).
    pub fields: mmdb::Fields,
}

impl Source {
    /// A source with every optional setting at its default.
    pub fn new(name: &str, cluster: &str, authority: &str, path: &str, format: Format) -> Source {
        Source {
            name: name.into(),
            cluster: cluster.into(),
            authority: authority.into(),
            path: path.into(),
            format,
            select: Select::default(),
            refresh_s: DEFAULT_REFRESH_S,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            on_unavailable: OnUnavailable::Empty,
            max_stale_s: None,
            min_prefix: DEFAULT_MIN_PREFIX,
            fields: mmdb::Fields::default(),
        }
    }
}

/// Whether `name` is a well-formed source name: 1–64 of `a-z 0-9 _ -`.
pub fn is_source_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// The prefix of a list entry that names a source.
pub const SOURCE_PREFIX: &str = "source:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_passes_when_every_key_matches_one_of_its_values() {
        let select = Select(vec![
            ("service".into(), vec!["CLOUDFRONT".into(), "S3".into()]),
            ("region".into(), vec!["GLOBAL".into()]),
        ]);
        let entry = |service: &'static str, region: Option<&'static str>| {
            move |k: &str| match k {
                "service" => Some(service),
                "region" => region,
                _ => None,
            }
        };
        assert!(select.passes(entry("CLOUDFRONT", Some("GLOBAL"))));
        assert!(select.passes(entry("S3", Some("GLOBAL"))));
        assert!(!select.passes(entry("EC2", Some("GLOBAL"))));
        assert!(!select.passes(entry("CLOUDFRONT", Some("us-east-1"))));
        assert!(
            !select.passes(entry("CLOUDFRONT", None)),
            "a missing field fails"
        );
        assert!(
            Select::default().passes(|_| None),
            "no select takes everything"
        );
    }

    #[test]
    fn source_names_are_1_to_64_of_lowercase_digits_dash_underscore() {
        assert!(is_source_name("cloudfront"));
        assert!(is_source_name("fire_hol-1"));
        assert!(is_source_name(&"a".repeat(64)));
        for bad in ["", "CloudFront", "a.b", "a b", &"a".repeat(65)] {
            assert!(!is_source_name(bad), "{bad:?}");
        }
    }
}
