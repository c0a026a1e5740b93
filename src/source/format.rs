//! Reading a list server's body (docs/sources.md, "Formats" and "Accepting a body"): the networks it
//! lists, or the reason it is refused. A refused body changes nothing: the last good list stays.

use std::fmt;

use serde_json::Value;

use super::{Format, Select};
use crate::ipset::{parse_net, IpSet, IpSetBuilder};

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
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::TooLarge { bytes, max } => {
                write!(f, "body of {bytes} bytes is over max_bytes ({max})")
            }
            Rejection::Malformed(why) => write!(f, "not well formed: {why}"),
            Rejection::NoEntry { skipped_lines } => write!(
                f,
                "no valid entry ({skipped_lines} line(s) skipped as not an address or CIDR)"
            ),
            Rejection::TooManyEntries { max } => {
                write!(f, "more than max_entries ({max}) entries")
            }
        }
    }
}

/// Reads a body of `format`, taking the entries `select` passes; at most `max_entries`.
/// `max_bytes` is checked by the caller before the body is even read from the host
/// ([`check_size`]).
pub fn parse(
    format: Format,
    select: &Select,
    body: &[u8],
    max_entries: usize,
) -> Result<Accepted, Rejection> {
    collect(format, select, body, max_entries)?.build()
}

/// [`parse`], taking the body: it is freed before the networks are sorted and indexed, which
/// lowers the peak memory of a large list (WebAssembly memory never shrinks: a VM keeps its peak).
pub fn parse_owned(
    format: Format,
    select: &Select,
    body: Vec<u8>,
    max_entries: usize,
) -> Result<Accepted, Rejection> {
    let collected = collect(format, select, &body, max_entries);
    drop(body);
    collected?.build()
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
    max_entries: usize,
) -> Result<Collected, Rejection> {
    let mut list = Collect {
        builder: IpSetBuilder::default(),
        entries: 0,
        max_entries,
    };
    let skipped_lines = match format {
        Format::Text => text(body, &mut list)?,
        Format::Aws => {
            let doc = json(body)?;
            json_list(&doc, "prefixes", &["ip_prefix"], select, &mut list)?;
            json_list(&doc, "ipv6_prefixes", &["ipv6_prefix"], select, &mut list)?;
            0
        }
        Format::Gcp => {
            let doc = json(body)?;
            json_list(
                &doc,
                "prefixes",
                &["ipv4Prefix", "ipv6Prefix"],
                select,
                &mut list,
            )?;
            0
        }
        Format::Azure => {
            let doc = json(body)?;
            azure(&doc, select, &mut list)?;
            0
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

struct Collect {
    builder: IpSetBuilder,
    entries: usize,
    max_entries: usize,
}

impl Collect {
    fn push(&mut self, net: ipnet::IpNet) -> Result<(), Rejection> {
        if self.entries == self.max_entries {
            return Err(Rejection::TooManyEntries {
                max: self.max_entries,
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

fn json(body: &[u8]) -> Result<Value, Rejection> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::Malformed(format!("not valid JSON ({e})")))?;
    if !doc.is_object() {
        return Err(Rejection::Malformed(
            "the document is not a JSON object".into(),
        ));
    }
    Ok(doc)
}

/// The entries of the array `doc[key]`: each an object with one of the `fields` holding a CIDR,
/// and the string fields `select` reads, under the select keys' own names.
fn json_list(
    doc: &Value,
    key: &str,
    fields: &[&str],
    select: &Select,
    list: &mut Collect,
) -> Result<(), Rejection> {
    let Some(items) = doc.get(key) else {
        return Ok(());
    };
    let items = items
        .as_array()
        .ok_or_else(|| Rejection::Malformed(format!("{key} is not a list")))?;
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            return Err(Rejection::Malformed(format!("{key}[{i}] is not an object")));
        }
        let Some((name, cidr)) = fields.iter().find_map(|f| Some((*f, item.get(*f)?))) else {
            return Err(Rejection::Malformed(format!(
                "{key}[{i}] has no {}",
                fields.join(" or ")
            )));
        };
        if !select.passes(|k| item.get(k).and_then(Value::as_str)) {
            continue;
        }
        list.push(cidr_value(cidr, &format!("{key}[{i}].{name}"))?)?;
    }
    Ok(())
}

/// Azure Service Tags: `values[].properties.addressPrefixes[]`; select on `name`, and on
/// `region` and `system_service` (`properties.region`, `properties.systemService`).
fn azure(doc: &Value, select: &Select, list: &mut Collect) -> Result<(), Rejection> {
    let values = doc
        .get("values")
        .and_then(Value::as_array)
        .ok_or_else(|| Rejection::Malformed("values is missing or not a list".into()))?;
    for (i, tag) in values.iter().enumerate() {
        let properties = tag
            .get("properties")
            .filter(|p| p.is_object())
            .ok_or_else(|| Rejection::Malformed(format!("values[{i}].properties is missing")))?;
        let passes = select.passes(|k| {
            match k {
                "name" => tag.get("name"),
                "region" => properties.get("region"),
                "system_service" => properties.get("systemService"),
                _ => None,
            }
            .and_then(Value::as_str)
        });
        if !passes {
            continue;
        }
        let prefixes = properties
            .get("addressPrefixes")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Rejection::Malformed(format!(
                    "values[{i}].properties.addressPrefixes is missing or not a list"
                ))
            })?;
        for (j, cidr) in prefixes.iter().enumerate() {
            let at = format!("values[{i}].properties.addressPrefixes[{j}]");
            list.push(cidr_value(cidr, &at)?)?;
        }
    }
    Ok(())
}

fn cidr_value(value: &Value, at: &str) -> Result<ipnet::IpNet, Rejection> {
    value
        .as_str()
        .and_then(parse_net)
        .map(|(net, _)| net)
        .ok_or_else(|| Rejection::Malformed(format!("{at}: {value} is not an IP address or CIDR")))
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
        let got = parse(Format::Text, &Select::default(), body, 100).unwrap();
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
        let got = parse(Format::Text, &Select::default(), body, 100).unwrap();
        assert_eq!((got.entries, got.skipped_lines), (2, 3));
    }

    #[test]
    fn a_body_without_a_valid_entry_is_rejected() {
        let r = parse(Format::Text, &Select::default(), b"# only\njunk\n", 100).unwrap_err();
        assert_eq!(r, Rejection::NoEntry { skipped_lines: 1 });
        let r = parse(Format::Text, &Select::default(), b"", 100).unwrap_err();
        assert_eq!(r, Rejection::NoEntry { skipped_lines: 0 });
    }

    #[test]
    fn more_than_max_entries_is_rejected() {
        let body = b"1.1.1.1\n2.2.2.2\n3.3.3.3\n";
        assert!(parse(Format::Text, &Select::default(), body, 3).is_ok());
        let r = parse(Format::Text, &Select::default(), body, 2).unwrap_err();
        assert_eq!(r, Rejection::TooManyEntries { max: 2 });
    }

    #[test]
    fn parse_owned_is_parse() {
        let body = b"1.2.3.4\njunk\n2001:db8::/32\n".to_vec();
        let a = parse(Format::Text, &Select::default(), &body, 10).unwrap();
        let b = parse_owned(Format::Text, &Select::default(), body, 10).unwrap();
        assert_eq!((a.entries, a.skipped_lines), (b.entries, b.skipped_lines));
        assert_eq!(a.set.ranges_v4(), b.set.ranges_v4());
        assert_eq!(a.set.ranges_v6(), b.set.ranges_v6());
        let none = parse_owned(Format::Text, &Select::default(), b"# x\n".to_vec(), 10);
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
        let got = parse(Format::Aws, &Select::default(), AWS.as_bytes(), 100).unwrap();
        assert_eq!(got.entries, 5);
        assert!(got.set.contains(ip("3.2.34.1")) && got.set.contains(ip("2a05:d07a:a000::1")));
    }

    #[test]
    fn aws_select_on_service_region_and_network_border_group() {
        let s = select(&[("service", &["CLOUDFRONT"])]);
        let got = parse(Format::Aws, &s, AWS.as_bytes(), 100).unwrap();
        assert_eq!(got.entries, 3);
        assert!(got.set.contains(ip("13.33.0.1")) && got.set.contains(ip("2600:9000::1")));
        assert!(!got.set.contains(ip("3.2.34.1")) && !got.set.contains(ip("2a05:d07a:a000::1")));
        let s = select(&[("service", &["CLOUDFRONT"]), ("region", &["us-east-1"])]);
        let got = parse(Format::Aws, &s, AWS.as_bytes(), 100).unwrap();
        assert_eq!(got.entries, 1);
        let s = select(&[("network_border_group", &["af-south-1", "eu-south-1"])]);
        assert_eq!(
            parse(Format::Aws, &s, AWS.as_bytes(), 100).unwrap().entries,
            2
        );
        let s = select(&[("service", &["NOPE"])]);
        assert_eq!(
            parse(Format::Aws, &s, AWS.as_bytes(), 100).unwrap_err(),
            Rejection::NoEntry { skipped_lines: 0 }
        );
    }

    #[test]
    fn gcp_reads_ipv4prefix_and_ipv6prefix_with_select_on_service_and_scope() {
        let body = r#"{"syncToken":"1","prefixes":[
            {"ipv4Prefix":"34.1.208.0/20","service":"Google Cloud","scope":"africa-south1"},
            {"ipv6Prefix":"2600:1900:8000::/44","service":"Google Cloud","scope":"us-east1"},
            {"ipv4Prefix":"8.8.4.0/24","service":"Google","scope":"global"}]}"#;
        let all = parse(Format::Gcp, &Select::default(), body.as_bytes(), 100).unwrap();
        assert_eq!(all.entries, 3);
        let s = select(&[("service", &["Google Cloud"]), ("scope", &["us-east1"])]);
        let got = parse(Format::Gcp, &s, body.as_bytes(), 100).unwrap();
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
        let all = parse(Format::Azure, &Select::default(), body.as_bytes(), 100).unwrap();
        assert_eq!(all.entries, 3);
        let s = select(&[("system_service", &["AzureFrontDoor"])]);
        let got = parse(Format::Azure, &s, body.as_bytes(), 100).unwrap();
        assert_eq!(got.entries, 2);
        assert!(!got.set.contains(ip("20.38.108.1")));
        let s = select(&[
            ("name", &["Storage.WestEurope"]),
            ("region", &["westeurope"]),
        ]);
        assert_eq!(
            parse(Format::Azure, &s, body.as_bytes(), 100)
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
            let r = parse(format, &Select::default(), body.as_bytes(), 100).unwrap_err();
            assert!(matches!(r, Rejection::Malformed(_)), "{body}: {r:?}");
        }
    }
}
