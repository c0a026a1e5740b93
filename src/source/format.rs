//! Reading a list server's body (docs/sources.md, "Formats" and "Accepting a body"): the networks it
//! lists, or the reason it is refused. A refused body changes nothing: the last good list stays.
//! The JSON formats are read in one streaming pass (`json`): no document tree of the body.

use std::fmt;

use ipnet::IpNet;

use std::sync::Arc;

use super::table::Content;
use super::{json, mmdb, Format, MinPrefix, Select, Source};
use crate::ipset::{canonical_net, parse_net, IpSet, IpSetBuilder};

/// What a body must keep to, besides being well formed: at most `max_entries` entries, none of
/// them the whole address space, and, for a source used as trusted proxies, none broader than
/// `min_prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accept {
    /// Most entries accepted.
    pub max_entries: usize,
    /// The broadest entry accepted (None: any but `/0`).
    pub min_prefix: Option<MinPrefix>,
}

impl Accept {
    /// The limits of `source`; `trusted`: some `client_ip.trusted_proxies` names it.
    pub fn of(source: &Source, trusted: bool) -> Accept {
        Accept {
            max_entries: source.max_entries,
            min_prefix: trusted.then_some(source.min_prefix),
        }
    }

    /// `max_entries` alone (no `min_prefix`).
    pub fn entries(max_entries: usize) -> Accept {
        Accept {
            max_entries,
            min_prefix: None,
        }
    }
}

/// A body accepted: its networks, compiled.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// The networks, compiled.
    pub set: IpSet,
    /// Entries taken (before merging overlapping ones).
    pub entries: usize,
    /// Lines of a `text` body that were neither an entry, a comment nor blank.
    pub skipped_lines: usize,
}

/// Why a body is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// Larger than `max_bytes`.
    TooLarge {
        /// Body size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// Not well formed for its format (the reason, with the place in the document).
    Malformed(String),
    /// No valid entry (after `select`).
    NoEntry {
        /// Lines of a `text` body that were skipped.
        skipped_lines: usize,
    },
    /// More than `max_entries` entries.
    TooManyEntries {
        /// The limit, exceeded.
        max: usize,
    },
    /// An entry is the whole IPv4 or IPv6 address space (`0.0.0.0/0`, `::/0`).
    Everything {
        /// The entry, as a network.
        entry: String,
    },
    /// A MaxMind DB file that cannot be read, or lacks the named fields (docs/geo.md).
    Database(String),
    /// An entry of a source used as trusted proxies is broader than its `min_prefix`.
    TooBroad {
        /// The entry, as a network.
        entry: String,
        /// `min_prefix.ipv4` or `min_prefix.ipv6`.
        key: &'static str,
        /// The limit.
        min: u8,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::TooLarge { bytes, max } => {
                write!(f, "body of {bytes} bytes is over max_bytes ({max})")
            }
            Rejection::Malformed(why) => write!(f, "not well formed: {why}"),
            Rejection::Database(why) => write!(f, "not a usable MaxMind DB: {why}"),
            Rejection::NoEntry { skipped_lines } => write!(
                f,
                "no valid entry ({skipped_lines} line(s) skipped as not an address or CIDR)"
            ),
            Rejection::TooManyEntries { max } => {
                write!(f, "more than max_entries ({max}) entries")
            }
            Rejection::Everything { entry } => write!(
                f,
                "it lists {entry}, every address (a list server never lists the whole address space)"
            ),
            Rejection::TooBroad { entry, key, min } => write!(
                f,
                "{entry} is broader than min_prefix.{key} (/{min}) of a source used in client_ip.trusted_proxies"
            ),
        }
    }
}

/// Reads a body of `format`, taking the entries `select` passes, within `accept`.
/// `max_bytes` is checked by the caller before the body is even read from the host
/// ([`check_size`]).
///
/// A format is a function from the body to networks pushed into a [`Collect`]; a new format
/// (a binary one, say) is one more arm of [`collect`] and the limits stay in one place.
pub fn parse(
    format: Format,
    select: &Select,
    body: &[u8],
    accept: &Accept,
) -> Result<Accepted, Rejection> {
    collect(format, select, body, accept)?.build()
}

/// [`parse`], taking the body: it is freed before the networks are sorted and indexed, which
/// lowers the peak memory of a large list (WebAssembly memory never shrinks: a VM keeps its peak).
pub fn parse_owned(
    format: Format,
    select: &Select,
    body: Vec<u8>,
    accept: &Accept,
) -> Result<Accepted, Rejection> {
    let collected = collect(format, select, &body, accept);
    drop(body);
    collected?.build()
}

/// Reads the body of `source`: a list of networks, or (`mmdb`) a database. Returns the content,
/// the entries taken and the lines skipped.
pub fn read_source(
    source: &Source,
    body: Vec<u8>,
    accept: &Accept,
) -> Result<(Content, usize, usize), Rejection> {
    if source.format == Format::Mmdb {
        let geo =
            mmdb::read(&body, &source.fields, accept.max_entries).map_err(Rejection::Database)?;
        let entries = geo.len();
        return Ok((Content::Geo(Arc::new(geo)), entries, 0));
    }
    let accepted = parse_owned(source.format, &source.select, body, accept)?;
    Ok((
        Content::Set(accepted.set),
        accepted.entries,
        accepted.skipped_lines,
    ))
}

/// Refuses a body over `max_bytes` from its size alone; for a database, says that city
/// databases do not fit.
pub fn check_source_size(source: &Source, bytes: usize) -> Result<(), Rejection> {
    match check_size(bytes, source.max_bytes) {
        Err(_) if source.format == Format::Mmdb => Err(Rejection::Database(format!(
            "file of {bytes} bytes is over max_bytes ({}); a city database does not fit, a country or ASN database does",
            source.max_bytes
        ))),
        other => other,
    }
}

/// The networks of a body, collected but not yet compiled.
struct Collected {
    list: Collect,
    skipped_lines: usize,
}

impl Collected {
    fn build(self) -> Result<Accepted, Rejection> {
        if self.list.entries == 0 {
            return Err(Rejection::NoEntry {
                skipped_lines: self.skipped_lines,
            });
        }
        Ok(Accepted {
            entries: self.list.entries,
            set: self.list.builder.build(),
            skipped_lines: self.skipped_lines,
        })
    }
}

fn collect(
    format: Format,
    select: &Select,
    body: &[u8],
    accept: &Accept,
) -> Result<Collected, Rejection> {
    let mut list = Collect {
        builder: IpSetBuilder::default(),
        entries: 0,
        accept: *accept,
    };
    let skipped_lines = match format {
        Format::Text => text(body, &mut list)?,
        Format::Aws | Format::Gcp | Format::Azure => {
            json::read(format, select, body, &mut list)?;
            0
        }
        // A database is not a list of networks: `mmdb::read` takes it (machine).
        Format::Mmdb => {
            return Err(Rejection::Malformed(
                "an mmdb body is a database, not a list".into(),
            ))
        }
    };
    Ok(Collected {
        list,
        skipped_lines,
    })
}

/// Refuses a body over `max_bytes` from its size alone.
pub fn check_size(bytes: usize, max: usize) -> Result<(), Rejection> {
    if bytes > max {
        Err(Rejection::TooLarge { bytes, max })
    } else {
        Ok(())
    }
}

/// The networks a format reads from a body, checked against [`Accept`] one by one.
pub(super) struct Collect {
    builder: IpSetBuilder,
    entries: usize,
    accept: Accept,
}

impl Collect {
    /// Takes one entry, or rejects the body.
    pub(super) fn push(&mut self, net: IpNet) -> Result<(), Rejection> {
        // `::ffff:0:0/96` is every IPv4 address: judge the network as the list will hold it.
        let net = canonical_net(net);
        if net.prefix_len() == 0 {
            return Err(Rejection::Everything {
                entry: net.to_string(),
            });
        }
        if let Some(min) = self.accept.min_prefix {
            let (key, min) = match net {
                IpNet::V4(_) => ("ipv4", min.ipv4),
                IpNet::V6(_) => ("ipv6", min.ipv6),
            };
            if net.prefix_len() < min {
                return Err(Rejection::TooBroad {
                    entry: net.to_string(),
                    key,
                    min,
                });
            }
        }
        if self.entries == self.accept.max_entries {
            return Err(Rejection::TooManyEntries {
                max: self.accept.max_entries,
            });
        }
        self.entries += 1;
        self.builder.push(net);
        Ok(())
    }
}

/// `text`: the first whitespace-separated token of each line, comments (`#`, `;`) and blank
/// lines ignored, invalid lines skipped and counted. Returns the number skipped.
fn text(body: &[u8], list: &mut Collect) -> Result<usize, Rejection> {
    let mut skipped = 0;
    for line in body.split(|&b| b == b'\n') {
        let end = line
            .iter()
            .position(|&b| b == b'#' || b == b';')
            .unwrap_or(line.len());
        let token = line[..end]
            .split(|b| b.is_ascii_whitespace())
            .find(|t| !t.is_empty());
        let Some(token) = token else { continue };
        match std::str::from_utf8(token).ok().and_then(parse_net) {
            Some((net, _)) => list.push(net)?,
            None => skipped += 1,
        }
    }
    Ok(skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().unwrap()
    }

    fn select(pairs: &[(&str, &[&str])]) -> Select {
        Select(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn text_takes_the_first_token_of_each_line_and_ignores_comments_and_blank_lines() {
        let body =
            b"# FireHOL level1\n; Spamhaus DROP\n\n1.2.3.0/24 ; SBL123\n  5.6.7.8\textra words\n\
                     2001:db8::/32 # v6\r\n  \t \n9.9.9.9;comment\n";
        let got = parse(
            Format::Text,
            &Select::default(),
            body,
            &Accept::entries(100),
        )
        .unwrap();
        assert_eq!(got.entries, 4);
        assert_eq!(got.skipped_lines, 0);
        for a in ["1.2.3.4", "5.6.7.8", "2001:db8::1", "9.9.9.9"] {
            assert!(got.set.contains(ip(a)), "{a}");
        }
        assert!(!got.set.contains(ip("5.6.7.9")));
    }

    #[test]
    fn text_invalid_lines_are_skipped_and_counted() {
        let body = b"1.2.3.4\nnot-an-address\n10.0.0.300/8\n\xff\xfe\n5.6.7.0/24\n";
        let got = parse(
            Format::Text,
            &Select::default(),
            body,
            &Accept::entries(100),
        )
        .unwrap();
        assert_eq!((got.entries, got.skipped_lines), (2, 3));
    }

    #[test]
    fn a_body_without_a_valid_entry_is_rejected() {
        let r = parse(
            Format::Text,
            &Select::default(),
            b"# only\njunk\n",
            &Accept::entries(100),
        )
        .unwrap_err();
        assert_eq!(r, Rejection::NoEntry { skipped_lines: 1 });
        let r = parse(Format::Text, &Select::default(), b"", &Accept::entries(100)).unwrap_err();
        assert_eq!(r, Rejection::NoEntry { skipped_lines: 0 });
    }

    #[test]
    fn more_than_max_entries_is_rejected() {
        let body = b"1.1.1.1\n2.2.2.2\n3.3.3.3\n";
        assert!(parse(Format::Text, &Select::default(), body, &Accept::entries(3)).is_ok());
        let r = parse(Format::Text, &Select::default(), body, &Accept::entries(2)).unwrap_err();
        assert_eq!(r, Rejection::TooManyEntries { max: 2 });
    }

    #[test]
    fn parse_owned_is_parse() {
        let body = b"1.2.3.4\njunk\n2001:db8::/32\n".to_vec();
        let a = parse(
            Format::Text,
            &Select::default(),
            &body,
            &Accept::entries(10),
        )
        .unwrap();
        let b = parse_owned(Format::Text, &Select::default(), body, &Accept::entries(10)).unwrap();
        assert_eq!((a.entries, a.skipped_lines), (b.entries, b.skipped_lines));
        assert_eq!(a.set.ranges_v4(), b.set.ranges_v4());
        assert_eq!(a.set.ranges_v6(), b.set.ranges_v6());
        let none = parse_owned(
            Format::Text,
            &Select::default(),
            b"# x\n".to_vec(),
            &Accept::entries(10),
        );
        assert_eq!(none.unwrap_err(), Rejection::NoEntry { skipped_lines: 0 });
    }

    #[test]
    fn a_body_over_max_bytes_is_rejected_from_its_size() {
        assert!(check_size(10, 10).is_ok());
        assert_eq!(
            check_size(11, 10),
            Err(Rejection::TooLarge { bytes: 11, max: 10 })
        );
    }

    const AWS: &str = r#"{"syncToken":"1","createDate":"2026-11-29-10-00-00",
      "prefixes":[
        {"ip_prefix":"3.2.34.0/26","region":"af-south-1","service":"AMAZON","network_border_group":"af-south-1"},
        {"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT","network_border_group":"GLOBAL"},
        {"ip_prefix":"52.46.0.0/18","region":"us-east-1","service":"CLOUDFRONT","network_border_group":"us-east-1"}],
      "ipv6_prefixes":[
        {"ipv6_prefix":"2600:9000::/28","region":"GLOBAL","service":"CLOUDFRONT","network_border_group":"GLOBAL"},
        {"ipv6_prefix":"2a05:d07a:a000::/40","region":"eu-south-1","service":"S3","network_border_group":"eu-south-1"}]}"#;

    #[test]
    fn aws_reads_ipv4_and_ipv6_prefixes() {
        let got = parse(
            Format::Aws,
            &Select::default(),
            AWS.as_bytes(),
            &Accept::entries(100),
        )
        .unwrap();
        assert_eq!(got.entries, 5);
        assert!(got.set.contains(ip("3.2.34.1")) && got.set.contains(ip("2a05:d07a:a000::1")));
    }

    #[test]
    fn aws_select_on_service_region_and_network_border_group() {
        let s = select(&[("service", &["CLOUDFRONT"])]);
        let got = parse(Format::Aws, &s, AWS.as_bytes(), &Accept::entries(100)).unwrap();
        assert_eq!(got.entries, 3);
        assert!(got.set.contains(ip("13.33.0.1")) && got.set.contains(ip("2600:9000::1")));
        assert!(!got.set.contains(ip("3.2.34.1")) && !got.set.contains(ip("2a05:d07a:a000::1")));
        let s = select(&[("service", &["CLOUDFRONT"]), ("region", &["us-east-1"])]);
        let got = parse(Format::Aws, &s, AWS.as_bytes(), &Accept::entries(100)).unwrap();
        assert_eq!(got.entries, 1);
        let s = select(&[("network_border_group", &["af-south-1", "eu-south-1"])]);
        assert_eq!(
            parse(Format::Aws, &s, AWS.as_bytes(), &Accept::entries(100))
                .unwrap()
                .entries,
            2
        );
        let s = select(&[("service", &["NOPE"])]);
        assert_eq!(
            parse(Format::Aws, &s, AWS.as_bytes(), &Accept::entries(100)).unwrap_err(),
            Rejection::NoEntry { skipped_lines: 0 }
        );
    }

    #[test]
    fn gcp_reads_ipv4prefix_and_ipv6prefix_with_select_on_service_and_scope() {
        let body = r#"{"syncToken":"1","prefixes":[
            {"ipv4Prefix":"34.1.208.0/20","service":"Google Cloud","scope":"africa-south1"},
            {"ipv6Prefix":"2600:1900:8000::/44","service":"Google Cloud","scope":"us-east1"},
            {"ipv4Prefix":"8.8.4.0/24","service":"Google","scope":"global"}]}"#;
        let all = parse(
            Format::Gcp,
            &Select::default(),
            body.as_bytes(),
            &Accept::entries(100),
        )
        .unwrap();
        assert_eq!(all.entries, 3);
        let s = select(&[("service", &["Google Cloud"]), ("scope", &["us-east1"])]);
        let got = parse(Format::Gcp, &s, body.as_bytes(), &Accept::entries(100)).unwrap();
        assert_eq!(got.entries, 1);
        assert!(got.set.contains(ip("2600:1900:8000::5")));
    }

    #[test]
    fn azure_reads_address_prefixes_with_select_on_name_region_system_service() {
        let body = r#"{"changeNumber":1,"cloud":"Public","values":[
          {"name":"AzureFrontDoor.Backend","id":"AzureFrontDoor.Backend","properties":{
            "changeNumber":1,"region":"","systemService":"AzureFrontDoor",
            "addressPrefixes":["13.73.248.16/29","2603:1000:4::/123"]}},
          {"name":"Storage.WestEurope","id":"Storage.WestEurope","properties":{
            "changeNumber":1,"region":"westeurope","systemService":"AzureStorage",
            "addressPrefixes":["20.38.108.0/23"]}}]}"#;
        let all = parse(
            Format::Azure,
            &Select::default(),
            body.as_bytes(),
            &Accept::entries(100),
        )
        .unwrap();
        assert_eq!(all.entries, 3);
        let s = select(&[("system_service", &["AzureFrontDoor"])]);
        let got = parse(Format::Azure, &s, body.as_bytes(), &Accept::entries(100)).unwrap();
        assert_eq!(got.entries, 2);
        assert!(!got.set.contains(ip("20.38.108.1")));
        let s = select(&[
            ("name", &["Storage.WestEurope"]),
            ("region", &["westeurope"]),
        ]);
        assert_eq!(
            parse(Format::Azure, &s, body.as_bytes(), &Accept::entries(100))
                .unwrap()
                .entries,
            1
        );
    }

    #[test]
    fn garbage_json_is_rejected_as_not_well_formed() {
        for (format, body) in [
            (Format::Aws, "{\"prefixes\": [ {\"ip_prefix\": "),
            (Format::Gcp, "[1, 2]"),
            (Format::Azure, "{\"values\": 3}"),
            (
                Format::Aws,
                "{\"prefixes\": [{\"ip_prefix\": \"1.2.3.999/8\"}]}",
            ),
            (Format::Aws, "{\"prefixes\": [{\"region\": \"x\"}]}"),
            (Format::Gcp, "{\"prefixes\": \"x\"}"),
        ] {
            let r = parse(
                format,
                &Select::default(),
                body.as_bytes(),
                &Accept::entries(100),
            )
            .unwrap_err();
            assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
        }
    }

    fn min8_16() -> Accept {
        Accept {
            max_entries: 100,
            min_prefix: Some(crate::source::DEFAULT_MIN_PREFIX),
        }
    }

    #[test]
    fn a_body_holding_the_whole_address_space_is_rejected_whatever_the_list() {
        for (format, body) in [
            (Format::Text, "192.0.2.0/24\n0.0.0.0/0\n"),
            (Format::Text, "::/0\n"),
            (Format::Text, "203.0.113.9/0 # host bits set\n"),
            (Format::Text, "::ffff:0:0/96\n"),
            (Format::Aws, r#"{"prefixes":[{"ip_prefix":"0.0.0.0/0"}]}"#),
            (Format::Aws, r#"{"ipv6_prefixes":[{"ipv6_prefix":"::/0"}]}"#),
            (Format::Gcp, r#"{"prefixes":[{"ipv6Prefix":"::/0"}]}"#),
            (
                Format::Azure,
                r#"{"values":[{"name":"x","properties":{"addressPrefixes":["0.0.0.0/0"]}}]}"#,
            ),
        ] {
            for accept in [Accept::entries(100), min8_16()] {
                let r = parse(format, &Select::default(), body.as_bytes(), &accept).unwrap_err();
                assert!(matches!(r, Rejection::Everything { .. }), "{body}: {r:?}");
            }
        }
        let r = parse(
            Format::Text,
            &Select::default(),
            b"::/0\n",
            &Accept::entries(9),
        );
        assert_eq!(
            r.unwrap_err().to_string(),
            "it lists ::/0, every address (a list server never lists the whole address space)"
        );
    }

    #[test]
    fn a_trusted_proxies_source_rejects_an_entry_broader_than_min_prefix() {
        let ok = parse(
            Format::Text,
            &Select::default(),
            b"10.0.0.0/8\n2600::/16\n",
            &min8_16(),
        );
        assert_eq!(ok.unwrap().entries, 2, "the limits themselves are accepted");
        for (body, key, min) in [("10.0.0.0/7\n", "ipv4", 8), ("2600::/15\n", "ipv6", 16)] {
            let r = parse(
                Format::Text,
                &Select::default(),
                body.as_bytes(),
                &min8_16(),
            )
            .unwrap_err();
            assert!(
                matches!(r, Rejection::TooBroad { key: k, min: m, .. } if k == key && m == min),
                "{r:?}"
            );
        }
        let aws = r#"{"prefixes":[{"ip_prefix":"13.32.0.0/15"},{"ip_prefix":"128.0.0.0/1"}]}"#;
        let r = parse(Format::Aws, &Select::default(), aws.as_bytes(), &min8_16()).unwrap_err();
        assert_eq!(
            r.to_string(),
            "128.0.0.0/1 is broader than min_prefix.ipv4 (/8) of a source used in client_ip.trusted_proxies"
        );
        let narrow = Accept {
            min_prefix: Some(crate::source::MinPrefix { ipv4: 24, ipv6: 48 }),
            ..min8_16()
        };
        assert!(parse(Format::Text, &Select::default(), b"192.0.2.0/23\n", &narrow).is_err());
    }

    #[test]
    fn min_prefix_is_not_applied_outside_trusted_proxies() {
        let got = parse(
            Format::Text,
            &Select::default(),
            b"128.0.0.0/1\n8000::/1\n",
            &Accept::entries(9),
        );
        assert_eq!(got.unwrap().entries, 2);
    }

    #[test]
    fn json_formats_skip_what_they_do_not_name_however_deep_or_large() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let numbers = vec!["1"; 10_000].join(",");
        let body = format!(
            r#"{{"syncToken":"{}","x":{deep},"y":[{numbers}],"prefixes":[{{"ip_prefix":"192.0.2.0/24","junk":{deep}}}]}}"#,
            "a".repeat(100_000)
        );
        let got = parse(
            Format::Aws,
            &Select::default(),
            body.as_bytes(),
            &Accept::entries(9),
        )
        .unwrap();
        assert_eq!(got.entries, 1);
        assert!(got.set.contains(ip("192.0.2.1")));
    }

    #[test]
    fn json_entry_rules_unselected_entries_are_skipped_even_when_invalid() {
        let body = r#"{"prefixes":[{"ip_prefix":"nope","service":"S3"},{"ip_prefix":"192.0.2.0/24","service":"CLOUDFRONT"}]}"#;
        let s = select(&[("service", &["CLOUDFRONT"])]);
        assert_eq!(
            parse(Format::Aws, &s, body.as_bytes(), &Accept::entries(9))
                .unwrap()
                .entries,
            1
        );
        let r = parse(
            Format::Aws,
            &Select::default(),
            body.as_bytes(),
            &Accept::entries(9),
        )
        .unwrap_err();
        assert_eq!(
            r,
            Rejection::Malformed(
                "prefixes[0].ip_prefix: \"nope\" is not an IP address or CIDR".into()
            )
        );
        for (format, body, want) in [
            (
                Format::Aws,
                r#"{"prefixes":[1]}"#,
                "prefixes[0] is not an object",
            ),
            (Format::Aws, r#"{"prefixes":{}}"#, "prefixes is not a list"),
            (Format::Aws, r#"[1]"#, "the document is not a JSON object"),
            (
                Format::Azure,
                r#"{"cloud":"Public"}"#,
                "values is missing or not a list",
            ),
            (
                Format::Azure,
                r#"{"values":[{"name":"a"}]}"#,
                "values[0].properties is missing",
            ),
            (
                Format::Azure,
                r#"{"values":[{"properties":{"addressPrefixes":3}}]}"#,
                "addressPrefixes is missing or not a list",
            ),
            (
                Format::Aws,
                r#"{"prefixes":[]} x"#,
                "not valid JSON (trailing characters",
            ),
        ] {
            let r = parse(
                format,
                &Select::default(),
                body.as_bytes(),
                &Accept::entries(9),
            )
            .unwrap_err();
            assert!(r.to_string().contains(want), "{body}: {r}");
        }
    }

    #[test]
    fn azure_reads_prefixes_before_the_name_that_selects_them() {
        let body = r#"{"values":[{"properties":{"addressPrefixes":["192.0.2.0/24"],"region":"r"},"name":"B"},
                                 {"properties":{"addressPrefixes":["198.51.100.0/24"]},"name":"A"}]}"#;
        let s = select(&[("name", &["A"])]);
        let got = parse(Format::Azure, &s, body.as_bytes(), &Accept::entries(9)).unwrap();
        assert_eq!(got.entries, 1);
        assert!(got.set.contains(ip("198.51.100.7")) && !got.set.contains(ip("192.0.2.7")));
    }
}
