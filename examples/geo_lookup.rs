//! The filter's own geo table and decisions, natively, for the differential test against PyPI's
//! `maxminddb` (tests/test_geo_differential.py, `make geo-differential`) and the parse-time
//! comparison (`make geo-compare`).
//!
//! `geo_lookup FILE country|asn DENY,DENY,... < addresses` builds the table the way an Envoy does:
//! a configuration with one `mmdb` source (its field for `country` or `asn`), its `geo` section
//! and an `access.deny` list of those entries; the file as that source's body (the size check and
//! `format::read_source`, as the source machine reads a 200), the table encoded into shared data
//! and decoded (as every worker adopts it), the policy bound to it. Then, per address line, the
//! request decided: it prints the country (or `-`), the AS number (or `-`) and the verdict
//! (`allow`/`deny`). On stderr: the parse time and the ranges. A refused file prints its reason
//! and exits with 2.
//!
//! `geo_lookup FILE country|asn DENY,... --cidrs` prints instead the networks the deny list
//! selects, one CIDR a line: the same decision as a plain list (make bench's case CIDR-C20).

use std::io::{BufRead, BufWriter, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use client_ip_core::bind::bind;
use client_ip_core::config::parse_sourced;
use client_ip_core::policy::{Downstream, Request};
use client_ip_core::source::format::{check_source_size, read_source, Accept};
use client_ip_core::source::geo::Pick;
use client_ip_core::source::table::{decode, encode, Content, Table};
use ipnet::{Ipv4Subnets, Ipv6Subnets};

fn config(kind: &str, deny: &str) -> String {
    let (field, value, entry) = match kind {
        "country" => ("country_field", "country_code", "country"),
        _ => ("asn_field", "autonomous_system_number", "asn"),
    };
    let entries: Vec<String> = deny
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|d| format!("\"{entry}:{d}\""))
        .collect();
    format!(
        r#"{{"sources": {{"db": {{"cluster": "geo", "authority": "geo.internal", "path": "/db.mmdb",
            "format": "mmdb", "{field}": "{value}", "max_bytes": 33554432, "max_entries": 4000000}}}},
          "geo": {{"{entry}": "db"}},
          "access": {{"deny": [{}]}}}}"#,
        entries.join(", ")
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cidrs = args.len() == 5 && args[4] == "--cidrs";
    if !(args.len() == 4 || cidrs) || !matches!(args[2].as_str(), "country" | "asn") {
        eprintln!("usage: geo_lookup FILE country|asn DENY,DENY,... [--cidrs] < addresses");
        std::process::exit(64);
    }
    let body = std::fs::read(&args[1]).unwrap_or_else(|e| {
        eprintln!("geo_lookup: cannot read {}: {e}", args[1]);
        std::process::exit(66);
    });
    let (template, plan, _) = parse_sourced(config(&args[2], &args[3]).as_bytes())
        .unwrap_or_else(|e| panic!("the differential's configuration: {e}"));
    let source = &plan.sources[0];
    let started = Instant::now();
    let read = check_source_size(source, body.len())
        .and_then(|()| read_source(source, body, &Accept::of(source, false)));
    let (content, entries, _) = match read {
        Ok(r) => r,
        Err(why) => {
            println!("refused: {why}");
            std::process::exit(2);
        }
    };
    let parsed = started.elapsed();
    let shared = encode(&Table {
        version: 1,
        entries: entries as u64,
        etag: None,
        last_modified: None,
        content,
    });
    let table = decode(&shared).expect("a published table decodes");
    if cidrs {
        print_cidrs(&table.content, &args[2], &args[3]);
        return;
    }
    let policy = bind(&template, &plan, &[Some(&table.content)]);
    eprintln!(
        "geo_lookup: parsed {} ranges in {:.1} ms; shared table {} bytes; bound in {:.1} ms",
        entries,
        parsed.as_secs_f64() * 1000.0,
        shared.len(),
        (started.elapsed() - parsed).as_secs_f64() * 1000.0
    );
    let headers = Vec::new();
    let stdin = std::io::stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lock().lines() {
        let line = line.expect("read stdin");
        let Ok(ip) = line.trim().parse::<IpAddr>() else {
            writeln!(out, "bad").unwrap();
            continue;
        };
        let downstream = match ip {
            IpAddr::V4(_) => format!("{ip}:1000"),
            IpAddr::V6(_) => format!("[{ip}]:1000"),
        };
        let request = Request {
            downstream: Downstream::from_filter_state(&downstream),
            headers: &headers,
        };
        let decision = policy.decide(&request);
        let geo = policy.client_geo(&decision).unwrap_or_default();
        let asn = geo.asn.map_or("-".to_string(), |n| n.to_string());
        writeln!(
            out,
            "{} {asn} {}",
            geo.country_code().unwrap_or("-"),
            decision.verdict.as_str()
        )
        .unwrap();
    }
}

/// The networks of the deny list's selection, as CIDRs.
fn print_cidrs(content: &Content, kind: &str, deny: &str) {
    let geo = content.geo().expect("an mmdb source holds a geo table");
    let pick = if kind == "country" {
        Pick::Countries(
            deny.split(',')
                .filter_map(|c| <[u8; 2]>::try_from(c.to_ascii_uppercase().as_bytes()).ok())
                .collect(),
        )
    } else {
        Pick::Asns(deny.split(',').filter_map(|n| n.parse().ok()).collect())
    };
    let set = geo.select(&pick);
    let mut out = BufWriter::new(std::io::stdout().lock());
    for &(first, last) in set.ranges_v4() {
        for net in Ipv4Subnets::new(Ipv4Addr::from(first), Ipv4Addr::from(last), 0) {
            writeln!(out, "{net}").unwrap();
        }
    }
    for (first, last) in set.ranges_v6() {
        for net in Ipv6Subnets::new(Ipv6Addr::from(first), Ipv6Addr::from(last), 0) {
            writeln!(out, "{net}").unwrap();
        }
    }
}
