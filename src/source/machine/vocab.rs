//! What goes in and out of the [`Machine`](super::Machine): the events' shared reads and the
//! actions the adapter performs (counters, gauges, log levels, shared-value writes, requests).

use super::*;

/// The counters of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// A body accepted.
    FetchOk,
    /// A 304.
    NotModified,
    /// No response, or not 200/304.
    FetchFailed,
    /// A body refused.
    Rejected,
    /// Invalid lines of a `text` body.
    SkippedLines,
}

/// The gauges of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Entries of the current list.
    Entries,
    /// Seconds since the last good body.
    AgeS,
}

/// A log line's level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
}

impl From<Level> for log::Level {
    /// The `log` crate's level an adapter logs the line at.
    fn from(level: Level) -> Self {
        match level {
            Level::Debug => log::Level::Debug,
            Level::Info => log::Level::Info,
            Level::Warn => log::Level::Warn,
        }
    }
}

/// What a lease write was for (its outcome is reported with [`Machine::lease_written`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseOp {
    /// Taking a free lease.
    Take,
    /// Renewing it; start fetching when it succeeds.
    Renew {
        /// The lease is confirmed and this VM does not fetch yet.
        start: bool,
    },
    /// Handing it over to an idle VM.
    HandOver,
    /// Releasing it (the VM goes away).
    Release,
}

/// The outcome of a shared-data write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written.
    Ok,
    /// Another write came first (compare-and-swap).
    CasMismatch,
    /// Another failure.
    Failed(String),
}

pub(super) fn written_text(w: &Written) -> &str {
    match w {
        Written::Ok => "ok",
        Written::CasMismatch => "another write came first",
        Written::Failed(e) => e,
    }
}

/// Why a request could not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Envoy knows no such cluster.
    UnknownCluster,
    /// Another failure.
    Other(String),
}

/// A response's head, as the adapter read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Head {
    /// No response: connection failure, reset, timeout, or a body over Envoy's buffer.
    None,
    /// The headers could not be read.
    Unreadable(String),
    /// `:status`, the validators, and the body's size.
    Headers {
        /// `:status`.
        status: String,
        /// `ETag`.
        etag: Option<String>,
        /// `Last-Modified`.
        last_modified: Option<String>,
        /// The body's size.
        body_size: usize,
    },
}

/// What the adapter does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `GET` for source `source` with these headers; report with [`Machine::sent`].
    Send {
        /// The source.
        source: usize,
        /// Request headers beside `:method`, `:path`, `:authority`.
        headers: Vec<(String, String)>,
    },
    /// Write a shared value (cas 0: unconditionally); a lease write reports with
    /// [`Machine::lease_written`].
    Write {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Compare-and-swap token.
        cas: u32,
        /// Set for a lease write.
        lease: Option<LeaseOp>,
    },
    /// Read a published table; report with [`Machine::table`].
    ReadTable {
        /// The source.
        source: usize,
    },
    /// Read the response body; report with [`Machine::body`] (with the lease as read then).
    ReadBody {
        /// The source.
        source: usize,
        /// Its size.
        size: usize,
    },
    /// Add `n` to a counter.
    Count {
        /// The source.
        source: usize,
        /// Which.
        counter: Counter,
        /// How much.
        n: u64,
    },
    /// Set a gauge.
    Gauge {
        /// The source.
        source: usize,
        /// Which.
        gauge: Gauge,
        /// The value.
        value: u64,
    },
    /// Log a line.
    Log(Level, String),
    /// The lists changed: bind the policy again ([`Machine::policy`]).
    Rebind,
}

/// The shared values read for a tick: the lease, the idle announcement, each source's status.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// `lease`.
    pub lease: Shared,
    /// `idle`.
    pub idle: Shared,
    /// `<name>.status`, by source (absent for unused ones).
    pub status: Vec<Shared>,
}
