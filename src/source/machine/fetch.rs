//! The fetch itself: sending when due, the response's head and body, and what a 200, a 304, a
//! failure or a rejected body does to a source's list, counters and schedule.

use super::*;
use crate::source::Format;

/// Why a fetch failed when Envoy handed back no response.
const NO_RESPONSE: &str =
    "no response (connection failure, reset, timeout, or a body over Envoy's 32 MiB buffer)";
/// The same for a database: Envoy drops a response over 32 MiB before the filter sees it, so a
/// city database (over 32 MiB) arrives as no response; the warning says so.
const NO_RESPONSE_MMDB: &str = "no response (connection failure, reset, timeout, or a body over Envoy's 32 MiB buffer: a city database does not fit, a country or ASN database does)";

impl Machine {
    pub(super) fn fetch_if_due(&mut self, i: usize, now: u64, out: &mut Vec<Action>) {
        let timeout = u64::from(self.sources[i].timeout_ms);
        let f = &mut self.feeds[i];
        if let Some((_, started)) = f.in_flight {
            if now < started.saturating_add(timeout).saturating_add(LOST_CALL_MS) {
                return;
            }
            f.in_flight = None;
            f.pending = None;
            self.failed(i, now, "no response came back".into(), out);
            return;
        }
        if !f.schedule.due(now) {
            return;
        }
        let mut headers = vec![("user-agent".to_string(), "client-ip-filter".to_string())];
        if let Some(etag) = &f.etag {
            headers.push(("if-none-match".into(), etag.clone()));
        }
        if let Some(lm) = &f.last_modified {
            headers.push(("if-modified-since".into(), lm.clone()));
        }
        f.in_flight = Some((None, now));
        out.push(Action::Send { source: i, headers });
    }

    /// The outcome of [`Action::Send`]: the call's token, or why it was not sent.
    pub fn sent(&mut self, i: usize, now: u64, result: Result<u32, SendError>) -> Vec<Action> {
        let mut out = Vec::new();
        let source = &self.sources[i];
        match result {
            // The fetch was dropped meanwhile (the lease was lost): its response will be ignored.
            Ok(_) if self.feeds[i].in_flight.is_none() => {}
            Ok(token) => {
                out.push(Action::Log(
                    Level::Debug,
                    format!("source {}: fetching {}", source.name, source.path),
                ));
                self.feeds[i].in_flight = Some((Some(token), now));
            }
            Err(e) => {
                let why = match e {
                    SendError::UnknownCluster => format!(
                        "sources.{}.cluster: \"{}\" is not a cluster Envoy knows; will retry",
                        source.name, source.cluster
                    ),
                    SendError::Other(e) => format!("cannot send the request ({e})"),
                };
                self.feeds[i].in_flight = None;
                self.failed(i, now, why, &mut out);
            }
        }
        out
    }

    /// The source a response with this call token answers, if it is one of ours still awaited.
    pub fn awaits(&self, token: u32) -> Option<usize> {
        self.feeds
            .iter()
            .position(|f| f.in_flight.is_some_and(|(t, _)| t == Some(token)))
    }

    /// A response's head. A token no longer awaited (a late response, or the lease was lost
    /// since) is ignored.
    pub fn response(&mut self, token: u32, now: u64, head: Head) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(i) = self.awaits(token) else {
            return out;
        };
        self.feeds[i].in_flight = None;
        match head {
            Head::None => {
                let why = if self.sources[i].format == Format::Mmdb {
                    NO_RESPONSE_MMDB
                } else {
                    NO_RESPONSE
                };
                self.failed(i, now, why.into(), &mut out)
            }
            Head::Unreadable(e) => self.failed(
                i,
                now,
                format!("cannot read the response headers ({e})"),
                &mut out,
            ),
            Head::Headers {
                status,
                etag,
                last_modified,
                body_size,
            } => match status.as_str() {
                "200" => match format::check_source_size(&self.sources[i], body_size) {
                    Ok(()) => {
                        self.feeds[i].pending = Some((etag, last_modified));
                        out.push(Action::ReadBody {
                            source: i,
                            size: body_size,
                        });
                    }
                    Err(r) => self.rejected(i, now, &r, &mut out),
                },
                "304" if self.feeds[i].list.is_some() => self.not_modified(i, now, &mut out),
                _ => self.failed(i, now, format!("status {status}"), &mut out),
            },
        }
        out
    }

    /// Whether `lease` (as read now) is this VM's, genuine and unexpired.
    pub(super) fn holds(&self, now: u64, lease: &Shared) -> bool {
        let key = self.lease_key();
        Opened::of(
            &self.seal,
            &key,
            lease.as_ref().map(|(b, _)| &b[..]),
            lease_of,
        )
        .genuine()
        .is_some_and(|l| l.holder == self.token && now <= l.expires_ms)
    }

    /// The body of a 200 read for [`Action::ReadBody`], with the lease as read just before.
    pub fn body(
        &mut self,
        i: usize,
        now: u64,
        body: Result<Vec<u8>, String>,
        lease: &Shared,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((etag, last_modified)) = self.feeds[i].pending.take() else {
            return out;
        };
        if !self.fetching && !self.alone {
            return out;
        }
        if self.fetching && !self.holds(now, lease) {
            out.push(Action::Log(
                Level::Info,
                "sources: the lease was lost while fetching; the response is not used".into(),
            ));
            self.stop_fetching(&mut out);
            return out;
        }
        let bytes = match body {
            Ok(b) => b,
            Err(e) => {
                self.failed(i, now, format!("cannot read the body ({e})"), &mut out);
                return out;
            }
        };
        let source = &self.sources[i];
        let accept = Accept::of(source, self.feeds[i].trusted);
        let (content, entries, skipped_lines) = match format::read_source(source, bytes, &accept) {
            Ok(a) => a,
            Err(r) => {
                if let Rejection::NoEntry { skipped_lines } = r {
                    out.push(Action::Count {
                        source: i,
                        counter: Counter::SkippedLines,
                        n: skipped_lines as u64,
                    });
                }
                self.rejected(i, now, &r, &mut out);
                return out;
            }
        };
        let name = source.name.clone();
        let entries = entries as u64;
        let f = &self.feeds[i];
        // The next version after any published one; a version that cannot advance (only a forged
        // value could be that high, and those do not open) publishes nothing.
        let version = f.published.max(f.version).checked_add(1);
        let table = Table {
            version: version.unwrap_or(0),
            entries,
            etag,
            last_modified,
            content,
        };
        match version {
            Some(version) if self.fetching => {
                let (table_key, status_key) = (self.table_key(i), self.status_key(i));
                let status = Status {
                    version,
                    last_good_ms: now,
                    entries,
                };
                out.push(Action::Write {
                    value: self.seal.seal(&table_key, table::encode(&table)),
                    key: table_key,
                    cas: 0,
                    lease: None,
                });
                out.push(Action::Write {
                    value: self.seal.seal(&status_key, status.encode()),
                    key: status_key,
                    cas: 0,
                    lease: None,
                });
            }
            Some(_) => {}
            None => out.push(Action::Log(
                Level::Warn,
                format!("source {name}: the list version cannot advance; not published"),
            )),
        }
        out.push(Action::Count {
            source: i,
            counter: Counter::FetchOk,
            n: 1,
        });
        if skipped_lines > 0 {
            out.push(Action::Count {
                source: i,
                counter: Counter::SkippedLines,
                n: skipped_lines as u64,
            });
        }
        out.push(Action::Gauge {
            source: i,
            gauge: Gauge::Entries,
            value: entries,
        });
        out.push(Action::Gauge {
            source: i,
            gauge: Gauge::AgeS,
            value: 0,
        });
        let jitter = self.next_jitter();
        let publish = self.fetching;
        let f = &mut self.feeds[i];
        f.schedule.succeeded(now, jitter);
        let first = f.list.is_none();
        if first || f.failing {
            out.push(Action::Log(
                Level::Info,
                format!(
                    "source {name}: {} with {entries} entries ({} line(s) skipped)",
                    if first { "loaded" } else { "recovered" },
                    skipped_lines
                ),
            ));
        } else {
            out.push(Action::Log(
                Level::Debug,
                format!("source {name}: new list, {entries} entries"),
            ));
        }
        f.failing = false;
        // A VM fetching alone keeps its version: any list published later is newer.
        if let Some(v) = version.filter(|_| publish) {
            f.version = v;
            f.published = f.published.max(v);
        }
        f.etag = table.etag;
        f.last_modified = table.last_modified;
        f.list = Some(Rc::new(table.content));
        f.last_good_ms = Some(now);
        f.available = true;
        out.push(Action::Rebind);
        out
    }

    pub(super) fn not_modified(&mut self, i: usize, now: u64, out: &mut Vec<Action>) {
        out.push(Action::Count {
            source: i,
            counter: Counter::NotModified,
            n: 1,
        });
        out.push(Action::Gauge {
            source: i,
            gauge: Gauge::AgeS,
            value: 0,
        });
        let jitter = self.next_jitter();
        let name = self.sources[i].name.clone();
        let f = &mut self.feeds[i];
        f.schedule.succeeded(now, jitter);
        f.last_good_ms = Some(now);
        if f.failing {
            out.push(Action::Log(
                Level::Info,
                format!("source {name}: recovered (not modified)"),
            ));
            f.failing = false;
        }
        if self.fetching && f.version > 0 {
            let status = Status {
                version: f.version,
                last_good_ms: now,
                entries: 0,
            };
            let key = self.status_key(i);
            out.push(Action::Write {
                value: self.seal.seal(&key, status.encode()),
                key,
                cas: 0,
                lease: None,
            });
        }
    }

    pub(super) fn failed(&mut self, i: usize, now: u64, why: String, out: &mut Vec<Action>) {
        out.push(Action::Count {
            source: i,
            counter: Counter::FetchFailed,
            n: 1,
        });
        let name = &self.sources[i].name;
        let f = &mut self.feeds[i];
        f.schedule.failed(now);
        if !f.failing {
            out.push(Action::Log(
                Level::Warn,
                format!(
                    "source {name}: fetch failed: {why}; {}, retrying in {} s",
                    if f.list.is_some() {
                        "keeping the last good list"
                    } else {
                        "no list yet"
                    },
                    f.schedule.next_ms().saturating_sub(now) / 1000
                ),
            ));
        } else {
            out.push(Action::Log(
                Level::Debug,
                format!("source {name}: fetch failed again: {why}"),
            ));
        }
        f.failing = true;
    }

    pub(super) fn rejected(&mut self, i: usize, now: u64, why: &Rejection, out: &mut Vec<Action>) {
        out.push(Action::Count {
            source: i,
            counter: Counter::Rejected,
            n: 1,
        });
        let f = &mut self.feeds[i];
        f.schedule.failed(now);
        f.failing = true;
        out.push(Action::Log(
            Level::Warn,
            format!(
                "source {}: body rejected: {why}; {}",
                self.sources[i].name,
                if f.list.is_some() {
                    "keeping the last good list"
                } else {
                    "no list yet"
                }
            ),
        ));
    }
}
