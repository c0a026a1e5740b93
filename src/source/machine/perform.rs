//! The one loop that performs a [`Machine`]'s actions through an adapter's host
//! ([`Machine::perform`], over [`SourceIo`]), the same in every adapter and in the tests: each
//! action's outcome goes back to the machine, and what that brings is performed before the rest.

use super::*;

/// What an adapter does for the machine: its host's calls, each answering for itself (nothing
/// here decides). `now_ms` is read after each call whose outcome the machine takes.
pub trait SourceIo {
    /// The host's clock, in milliseconds since the epoch.
    fn now_ms(&mut self) -> u64;
    /// Sends `GET` to `source`'s cluster with `headers` (beside `:method`, `:path`,
    /// `:authority`); the callout's token.
    fn send(&mut self, source: &Source, headers: &[(String, String)]) -> Result<u32, SendError>;
    /// Writes the shared value `key` (`cas` 0: unconditionally).
    fn write(&mut self, key: &str, value: &[u8], cas: u32) -> Written;
    /// Reads the shared value `key` (None: absent or unreadable).
    fn read(&mut self, key: &str) -> Shared;
    /// The body of the response being handled, of `size` bytes by its head.
    fn body(&mut self, size: usize) -> Result<Vec<u8>, String>;
    /// Adds `n` to `counter` of source `source`.
    fn count(&mut self, source: usize, counter: Counter, n: u64);
    /// Sets `gauge` of source `source`.
    fn gauge(&mut self, source: usize, gauge: Gauge, value: u64);
    /// Logs `line` at `level`.
    fn log(&mut self, level: Level, line: &str);
    /// The lists changed: the policy is to be bound again.
    fn rebind(&mut self);
}

impl Machine {
    /// Performs `actions` through `io`, in order, each outcome reported to the machine and the
    /// actions it brings performed before the rest.
    pub fn perform(&mut self, actions: Vec<Action>, io: &mut impl SourceIo) {
        // A stack, in reverse: the next action on top, what an outcome brings above the rest.
        let mut stack = actions;
        stack.reverse();
        while let Some(action) = stack.pop() {
            let more = self.perform_one(action, io);
            stack.extend(more.into_iter().rev());
        }
    }

    fn perform_one(&mut self, action: Action, io: &mut impl SourceIo) -> Vec<Action> {
        match action {
            Action::Send { source, headers } => {
                let sent = io.send(&self.sources()[source], &headers);
                self.sent(source, io.now_ms(), sent)
            }
            Action::Write {
                key,
                value,
                cas,
                lease,
            } => {
                let written = io.write(&key, &value, cas);
                drop(value);
                match (lease, written) {
                    (Some(op), written) => self.lease_written(io.now_ms(), op, written),
                    (None, Written::Ok) => Vec::new(),
                    (None, failed) => {
                        let line = format!(
                            "sources: cannot write {key} to shared data ({})",
                            written_text(&failed)
                        );
                        io.log(Level::Warn, &line);
                        Vec::new()
                    }
                }
            }
            Action::ReadTable { source } => {
                let key = self.table_key(source);
                let t0 = io.now_ms();
                let bytes = io.read(&key).map(|(b, _)| b);
                let t1 = io.now_ms();
                let more = self.table(source, t1, bytes);
                let line = format!(
                    "source {}: published table read {} ms, opened and decoded {} ms",
                    self.sources()[source].name,
                    t1.saturating_sub(t0),
                    io.now_ms().saturating_sub(t1)
                );
                io.log(Level::Debug, &line);
                more
            }
            Action::ReadBody { source, size } => {
                let body = io.body(size);
                let lease = io.read(&self.lease_key());
                self.body(source, io.now_ms(), body, &lease)
            }
            Action::Count { source, counter, n } => {
                io.count(source, counter, n);
                Vec::new()
            }
            Action::Gauge {
                source,
                gauge,
                value,
            } => {
                io.gauge(source, gauge, value);
                Vec::new()
            }
            Action::Log(level, line) => {
                io.log(level, &line);
                Vec::new()
            }
            Action::Rebind => {
                io.rebind();
                Vec::new()
            }
        }
    }
}
