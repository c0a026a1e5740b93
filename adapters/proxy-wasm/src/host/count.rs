/// One kind of host call: a proxy-wasm ABI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Kind {
    Log,
    GetLogLevel,
    SetTickPeriod,
    GetBufferBytes,
    DefineMetric,
    IncrementMetric,
    RecordMetric,
    GetCurrentTime,
    GetSharedData,
    SetSharedData,
    GetHeaderMapValue,
    GetHeaderMapPairs,
    ReplaceHeaderMapValue,
    RemoveHeaderMapValue,
    GetProperty,
    SetProperty,
    SendLocalResponse,
    CloseStream,
    DispatchHttpCall,
}

impl Kind {
    /// Every kind, in `repr` order.
    pub const ALL: [Kind; 19] = [
        Kind::Log,
        Kind::GetLogLevel,
        Kind::SetTickPeriod,
        Kind::GetBufferBytes,
        Kind::DefineMetric,
        Kind::IncrementMetric,
        Kind::RecordMetric,
        Kind::GetCurrentTime,
        Kind::GetSharedData,
        Kind::SetSharedData,
        Kind::GetHeaderMapValue,
        Kind::GetHeaderMapPairs,
        Kind::ReplaceHeaderMapValue,
        Kind::RemoveHeaderMapValue,
        Kind::GetProperty,
        Kind::SetProperty,
        Kind::SendLocalResponse,
        Kind::CloseStream,
        Kind::DispatchHttpCall,
    ];

    /// The ABI function's name without `proxy_` (`get_property`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Log => "log",
            Kind::GetLogLevel => "get_log_level",
            Kind::SetTickPeriod => "set_tick_period_milliseconds",
            Kind::GetBufferBytes => "get_buffer_bytes",
            Kind::DefineMetric => "define_metric",
            Kind::IncrementMetric => "increment_metric",
            Kind::RecordMetric => "record_metric",
            Kind::GetCurrentTime => "get_current_time_nanoseconds",
            Kind::GetSharedData => "get_shared_data",
            Kind::SetSharedData => "set_shared_data",
            Kind::GetHeaderMapValue => "get_header_map_value",
            Kind::GetHeaderMapPairs => "get_header_map_pairs",
            Kind::ReplaceHeaderMapValue => "replace_header_map_value",
            Kind::RemoveHeaderMapValue => "remove_header_map_value",
            Kind::GetProperty => "get_property",
            Kind::SetProperty => "set_property",
            Kind::SendLocalResponse => "send_local_response",
            Kind::CloseStream => "close_stream",
            Kind::DispatchHttpCall => "dispatch_http_call",
        }
    }
}

/// The counter name a kind is reported under.
pub fn counter_name(call: Kind) -> String {
    format!("client_ip.host_calls.{}", call.name())
}

/// The counter of contexts (requests and connections) the counted calls were made for.
pub const CONTEXTS: &str = "client_ip.host_calls.contexts";

#[cfg(feature = "count-host-calls")]
mod on {
    use std::cell::{Cell, RefCell};

    use super::Kind;

    thread_local! {
        /// Calls made outside a background guard, per kind; the last slot counts contexts.
        static COUNTS: RefCell<[u64; Kind::ALL.len() + 1]> =
            const { RefCell::new([0; Kind::ALL.len() + 1]) };
        /// What the last report handed over, per slot.
        static REPORTED: RefCell<[u64; Kind::ALL.len() + 1]> =
            const { RefCell::new([0; Kind::ALL.len() + 1]) };
        /// Background guards alive.
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    #[inline]
    pub fn note(call: Kind) {
        if DEPTH.with(Cell::get) == 0 {
            COUNTS.with(|c| c.borrow_mut()[call as usize] += 1);
        }
    }

    /// Counts a context (a request or a connection).
    pub fn context() {
        COUNTS.with(|c| c.borrow_mut()[Kind::ALL.len()] += 1);
    }

    /// Calls not counted while alive (the root's own work).
    pub struct Background(());

    impl Background {
        pub fn enter() -> Background {
            DEPTH.with(|d| d.set(d.get() + 1));
            Background(())
        }
    }

    impl Drop for Background {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    /// The counts not yet reported, per slot, marked as reported.
    pub fn take_unreported() -> Vec<(usize, u64)> {
        let now = COUNTS.with(|c| *c.borrow());
        REPORTED.with(|r| {
            let mut r = r.borrow_mut();
            let out = (0..now.len())
                .filter(|&i| now[i] != r[i])
                .map(|i| (i, now[i] - r[i]))
                .collect();
            *r = now;
            out
        })
    }
}

#[cfg(feature = "count-host-calls")]
pub use on::{context, note, Background};

/// Hands the counts made since the last report to the host, as counters (defined on first
/// use). Call it in a [`Background`] scope: its own calls are not counted.
#[cfg(all(feature = "count-host-calls", target_arch = "wasm32"))]
pub fn report() {
    let _background = Background::enter();
    for (slot, delta) in on::take_unreported() {
        let name = Kind::ALL
            .get(slot)
            .map_or_else(|| CONTEXTS.to_string(), |&c| counter_name(c));
        if let Ok(id) = super::define_counter(&name) {
            let _ = super::increment_metric(id, delta as i64);
        }
    }
}

/// Counting is off: nothing to report.
#[cfg(not(all(feature = "count-host-calls", target_arch = "wasm32")))]
#[inline(always)]
pub fn report() {}

/// Counting is off: a call is not counted.
#[cfg(not(feature = "count-host-calls"))]
#[inline(always)]
pub fn note(_call: Kind) {}

/// Counting is off: a context is not counted.
#[cfg(not(feature = "count-host-calls"))]
#[inline(always)]
pub fn context() {}

/// Counting is off: the guard is a zero-sized value without a destructor.
#[cfg(not(feature = "count-host-calls"))]
pub struct Background(());

#[cfg(not(feature = "count-host-calls"))]
impl Background {
    /// Does nothing.
    #[inline(always)]
    pub fn enter() -> Background {
        Background(())
    }
}
