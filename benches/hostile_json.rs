//! Peak heap of reading a hostile 32 MiB JSON body from a list server (`source::format::parse`,
//! format `aws`): what a broken or hostile list server can make one VM allocate. WebAssembly
//! memory never shrinks, so a VM keeps its peak for as long as it lives.
//!
//! Each body is built in memory first; the figure is the peak heap *above* the body while it is
//! parsed (the body itself is the host's copy, counted once), measured by a counting global
//! allocator. `make hostile-json` runs it and writes `tests/reliability/results/hostile-json.txt`.

use std::time::Instant;

use client_ip_core::source::format::{parse, Accept};
use client_ip_core::source::{Format, Select};

#[path = "support/heap.rs"]
mod heap;

const SIZE: usize = 32 * 1024 * 1024;

/// `head`, then `item` repeated while it fits, then `tail`: a body of at most [`SIZE`] bytes.
fn repeated(head: &str, item: &str, sep: &str, tail: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(SIZE);
    body.extend_from_slice(head.as_bytes());
    let mut first = true;
    while body.len() + sep.len() + item.len() + tail.len() <= SIZE {
        if !first {
            body.extend_from_slice(sep.as_bytes());
        }
        first = false;
        body.extend_from_slice(item.as_bytes());
    }
    body.extend_from_slice(tail.as_bytes());
    body
}

fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let nested = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let entry = r#"{"ip_prefix":"13.32.0.0/15","region":"GLOBAL","service":"CLOUDFRONT","network_border_group":"GLOBAL"}"#;
    vec![
        (
            "numbers: {\"prefixes\":[1,1,1,...]} (not objects)",
            repeated(r#"{"syncToken":"1","prefixes":["#, "1", ",", "]}"),
        ),
        (
            "numbers after the lists: {\"prefixes\":[],\"x\":[1,1,...]}",
            repeated(r#"{"prefixes":[],"x":["#, "1", ",", "]}"),
        ),
        (
            "deep nesting: {\"x\":[[[...100 deep...]]],...}",
            repeated(r#"{"prefixes":[],"x":["#, &nested, ",", "]}"),
        ),
        (
            "one huge string: {\"syncToken\":\"aaaa...\"}",
            repeated(r#"{"prefixes":[],"syncToken":""#, "a", "", "\"}"),
        ),
        (
            "one huge escaped string: {\"syncToken\":\"\\u0061...\"}",
            repeated(r#"{"prefixes":[],"syncToken":""#, "\\u0061", "", "\"}"),
        ),
        (
            "one huge escaped CIDR: {\"prefixes\":[{\"ip_prefix\":\"\\u0061...\"}]}",
            repeated(r#"{"prefixes":[{"ip_prefix":""#, "\\u0061", "", "\"}]}"),
        ),
        (
            "deep nesting inside entries: {\"prefixes\":[{\"ip_prefix\":\"192.0.2.0/24\",\"x\":[[[...]]]},...]}",
            repeated(
                r#"{"prefixes":["#,
                &format!(r#"{{"ip_prefix":"192.0.2.0/24","x":{nested}}}"#),
                ",",
                "]}",
            ),
        ),
        (
            "many empty objects: {\"x\":[{},{},...]}",
            repeated(r#"{"prefixes":[],"x":["#, "{}", ",", "]}"),
        ),
        (
            "a well-formed ip-ranges.json of 32 MiB (same entry repeated)",
            repeated(r#"{"syncToken":"1","prefixes":["#, entry, ",", "]}"),
        ),
    ]
}

fn main() {
    println!(
        "source::format::parse, format aws, max_entries 2000000, bodies of at most {SIZE} bytes"
    );
    println!("peak heap above the body while parsing, and wall time (native, release)");
    for (name, body) in bodies() {
        let before = heap::reset_peak();
        let t = Instant::now();
        let result = parse(
            Format::Aws,
            &Select::default(),
            &body,
            &Accept::entries(2_000_000),
        );
        let elapsed = t.elapsed();
        let peak = heap::peak() - before;
        let outcome = match &result {
            Ok(a) => format!("accepted, {} entries", a.entries),
            Err(r) => {
                let mut why = r.to_string();
                why.truncate(70);
                format!("rejected: {why}")
            }
        };
        drop(result);
        println!(
            "{name}\n  body {:.1} MiB, peak {:.1} KiB ({:.3}x the body), {:.0} ms, {outcome}",
            body.len() as f64 / 1048576.0,
            peak as f64 / 1024.0,
            peak as f64 / body.len() as f64,
            elapsed.as_secs_f64() * 1000.0
        );
    }
}
