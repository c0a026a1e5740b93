//! Helpers shared by the unit tests (of the core, and of the adapters through the cargo feature
//! `testutil`).

use crate::access::Verdict;
use crate::facts::{Fact, FactSink};
use crate::forward::HeaderMap;
use crate::ipset::{parse_net, IpSet};
use crate::policy::{Downstream, Policy, Request};
use crate::source::machine::Head;

/// Header lines as Envoy hands them over, from `(name, value)` pairs.
pub fn headers(lines: &[(&str, &str)]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A compiled IP set of CIDR (or address) texts; panics on an invalid one.
pub fn ip_set(nets: &[&str]) -> IpSet {
    IpSet::from_nets(nets.iter().map(|n| parse_net(n).unwrap().0))
}

/// The source `feed`'s required keys: served by cluster `lists` as `lists.example/a.txt`.
pub const FEED: &str = r#""cluster": "lists", "authority": "lists.example", "path": "/a.txt""#;

/// A configuration with the one source `feed` ([`FEED`] and `extra`, its further keys after a
/// comma) and the sections `sections` (JSON members, e.g. `"access": {...}`).
pub fn with_feed(extra: &str, sections: &str) -> String {
    format!(r#"{{"sources": {{"feed": {{{FEED}{extra}}}}}, {sections}}}"#)
}

/// `policy`'s decision for a request from `downstream` (`address:port`) with `authority` as its
/// `:authority` (when given) and no other header: its verdict, and whether it read a list
/// naming an unavailable source.
pub fn verdict_for(policy: &Policy, downstream: &str, authority: Option<&str>) -> (Verdict, bool) {
    let headers: Vec<(String, String)> = authority
        .map(|a| (":authority".to_string(), a.to_string()))
        .into_iter()
        .collect();
    let d = policy.decide(&Request {
        downstream: Downstream::from_filter_state(downstream),
        headers: &headers,
    });
    (d.verdict, d.unavailable)
}

/// [`verdict_for`] a request from `client` (port 1000) with no header.
pub fn verdict(policy: &Policy, client: &str) -> (Verdict, bool) {
    verdict_for(policy, &format!("{client}:1000"), None)
}

/// A list server's response head as the source machine takes it: `status`, a body of
/// `body_size` bytes, the validator `etag` when given.
pub fn head(status: &str, body_size: usize, etag: Option<&str>) -> Head {
    Head::Headers {
        status: status.into(),
        etag: etag.map(str::to_string),
        last_modified: None,
        body_size,
    }
}

/// The error message a configuration is refused with; panics when it is accepted.
pub fn config_error(json: &str) -> String {
    match crate::config::parse(json.as_bytes()) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

/// xorshift64*: random test inputs, reproducible from a seed and without a dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next value of the sequence (not an `Iterator`: the sequence never ends).
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn u128(&mut self) -> u128 {
        u128::from(self.next()) << 64 | u128::from(self.next())
    }
}

/// A host's request headers and filter state in memory, as the adapters' [`HeaderMap`] and
/// [`FactSink`] write them: every edit and fact in order, and an edit that fails on demand.
#[derive(Debug, Default)]
pub struct Recorder {
    /// The edits made, in order: `set name value` or `remove name`.
    pub edits: Vec<String>,
    /// The facts written, in order.
    pub facts: Vec<(Fact, String)>,
    /// The edit (counting from 0) that fails with status `"BadArgument"`, if any.
    pub fail_at: Option<usize>,
}

impl Recorder {
    /// A recorder whose edit number `n` (from 0) fails.
    pub fn failing_at(n: usize) -> Recorder {
        Recorder {
            fail_at: Some(n),
            ..Recorder::default()
        }
    }

    fn edit(&mut self, line: String) -> Result<(), &'static str> {
        if self.fail_at == Some(self.edits.len()) {
            self.fail_at = None;
            return Err("BadArgument");
        }
        self.edits.push(line);
        Ok(())
    }
}

impl HeaderMap for Recorder {
    type Error = &'static str;

    fn set(&mut self, name: &str, value: &str) -> Result<(), Self::Error> {
        self.edit(format!("set {name} {value}"))
    }

    fn remove(&mut self, name: &str) -> Result<(), Self::Error> {
        self.edit(format!("remove {name}"))
    }
}

impl FactSink for Recorder {
    fn write_fact(&mut self, fact: Fact, value: &str) {
        self.facts.push((fact, value.to_string()));
    }
}
