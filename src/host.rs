//! The host calls the filter makes, over the proxy-wasm ABI directly.
//!
//! The SDK's `hostcalls` functions panic on any status they do not expect (`set_property`, for
//! one, on anything but `Ok`), its logger unwraps the status of every log call, and its `Status`
//! enum cannot hold a code it does not know. A panic traps the VM: Envoy fails the request and,
//! the VM being gone, every later request on that worker. Here every call returns the host's
//! status code as an error instead, and the caller decides what a failure means.
//!
//! Buffers the host hands over are allocated in the VM through the SDK's exported
//! `proxy_on_memory_allocate` (a boxed `[u8]` of exactly the requested size), so they are owned
//! here as `Vec<u8>`. Paths and the local reply's header map are serialized once, not per request.
//!
//! With the cargo feature `count-host-calls` (bench builds only, never the release `.wasm`) every
//! call is counted by kind ([`count`]); without it the counting compiles to nothing.

use std::borrow::Cow;
use std::fmt;

/// A status code other than `Ok` returned by the host.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

impl fmt::Debug for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            1 => "NotFound",
            2 => "BadArgument",
            3 => "SerializationFailure",
            4 => "ParseFailure",
            7 => "Empty",
            8 => "CasMismatch",
            10 => "InternalFailure",
            _ => "status",
        };
        write!(f, "{name}({})", self.0)
    }
}

/// A property path in the ABI's form: the path's parts joined by NUL bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertyPath(Cow<'static, [u8]>);

impl PropertyPath {
    /// The path of `parts` (`["filter_state", "client_ip.downstream_address"]`).
    pub fn new(parts: &[&str]) -> Self {
        PropertyPath(Cow::Owned(parts.join("\0").into_bytes()))
    }

    /// A path known at compile time, already in the ABI's form (`b"source\0address"`).
    pub const fn fixed(path: &'static [u8]) -> Self {
        PropertyPath(Cow::Borrowed(path))
    }

    /// The path's bytes, in the ABI's form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A header map in the ABI's serialized form: the number of pairs, each pair's name and value
/// sizes (little-endian u32), then each name and value followed by a NUL byte.
pub fn serialize_pairs(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        for part in [name, value] {
            out.extend_from_slice(part.as_bytes());
            out.push(0);
        }
    }
    out
}

/// The pairs of a serialized header map, names and values as text (invalid UTF-8 replaced by
/// U+FFFD). None when the bytes are not a well-formed map: nothing here indexes out of bounds.
pub fn deserialize_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > bytes.len() {
        return None;
    }
    let mut take = |size: usize| -> Option<String> {
        let end = data.checked_add(size)?;
        let text = text(bytes.get(data..end)?.to_vec());
        if bytes.get(end) != Some(&0) {
            return None; // every part ends with a NUL
        }
        data = end + 1;
        Some(text)
    };
    let mut pairs = Vec::with_capacity(count);
    for i in 0..count {
        let (name_size, value_size) = (u32_at(4 + i * 8)?, u32_at(8 + i * 8)?);
        let name = take(name_size)?;
        let value = take(value_size)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// Bytes as text, invalid UTF-8 replaced by U+FFFD. HTTP/1 allows obs-text (bytes 0x80-0xFF) in
/// a header value and Envoy passes it through; an entry holding U+FFFD is simply not an address.
pub fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The host calls a request or a connection makes, as a trait: the seam between the adapter's
/// per-request logic and Envoy. [`Abi`] is Envoy's (the functions of this module, wasm32 only);
/// the adapter's native unit tests put a fake in its place that fails the calls they choose. The
/// logic is generic over it, so in the `.wasm` each method is the direct call (no vtable).
pub trait StreamHost {
    /// See [`property`].
    fn property(&mut self, path: &PropertyPath) -> Result<Option<Vec<u8>>, HostError>;
    /// See [`set_property`].
    fn set_property(&mut self, path: &PropertyPath, value: &[u8]) -> Result<(), HostError>;
    /// See [`request_header`].
    fn request_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// See [`request_header_lines`].
    fn request_header_lines(&mut self) -> Result<Vec<(String, String)>, HostError>;
    /// See [`set_request_header`].
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// See [`remove_request_header`].
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// See [`send_local_response`].
    fn send_local_response(
        &mut self,
        status: u32,
        body: &[u8],
        headers: &[u8],
        details: &str,
    ) -> Result<(), HostError>;
    /// See [`close_downstream`].
    fn close_downstream(&mut self) -> Result<(), HostError>;
}

/// Envoy, through the proxy-wasm ABI: the [`StreamHost`] of the `.wasm`.
pub struct Abi;

#[cfg(target_arch = "wasm32")]
impl StreamHost for Abi {
    #[inline(always)]
    fn property(&mut self, path: &PropertyPath) -> Result<Option<Vec<u8>>, HostError> {
        property(path)
    }
    #[inline(always)]
    fn set_property(&mut self, path: &PropertyPath, value: &[u8]) -> Result<(), HostError> {
        set_property(path, value)
    }
    #[inline(always)]
    fn request_header(&mut self, name: &str) -> Result<Option<Vec<u8>>, HostError> {
        request_header(name)
    }
    #[inline(always)]
    fn request_header_lines(&mut self) -> Result<Vec<(String, String)>, HostError> {
        request_header_lines()
    }
    #[inline(always)]
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        set_request_header(name, value)
    }
    #[inline(always)]
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        remove_request_header(name)
    }
    #[inline(always)]
    fn send_local_response(
        &mut self,
        status: u32,
        body: &[u8],
        headers: &[u8],
        details: &str,
    ) -> Result<(), HostError> {
        send_local_response(status, body, headers, details)
    }
    #[inline(always)]
    fn close_downstream(&mut self) -> Result<(), HostError> {
        close_downstream()
    }
}

/// Host calls counted by kind (cargo feature `count-host-calls`; `make bench` and the host-call
/// test build with it, the release `.wasm` does not). Calls made while a [`count::Background`]
/// guard lives (the root's configure, tick, HTTP-call responses, done) are not counted: what is
/// left is what requests and connections cost, divided by [`count::context`]'s count. The root
/// reports the totals as counters `client_ip.host_calls.<call>` and `client_ip.host_calls.contexts`
/// from its tick ([`count::report`]). Without the feature every function here is an empty inline
/// one and the guard a zero-sized value: no code, no data.
pub mod count {
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
}

#[cfg(target_arch = "wasm32")]
pub use abi::*;

#[cfg(target_arch = "wasm32")]
mod abi {
    use std::ptr::null_mut;

    use super::count::{note, Kind};
    use super::{deserialize_pairs, HostError, PropertyPath};

    const OK: u32 = 0;
    const NOT_FOUND: u32 = 1;
    /// `Status::SerializationFailure`: a header map the host returned could not be read.
    const SERIALIZATION_FAILURE: u32 = 3;
    /// `MapType::HttpRequestHeaders`.
    const REQUEST_HEADERS: u32 = 0;
    /// `BufferType::PluginConfiguration`.
    const PLUGIN_CONFIGURATION: u32 = 7;
    /// `MetricType::Counter`.
    const COUNTER: u32 = 0;
    /// `StreamType::Downstream`: the downstream connection of a network filter.
    const DOWNSTREAM: u32 = 2;
    /// `MetricType::Gauge`.
    const GAUGE: u32 = 1;
    /// `MapType::HttpCallResponseHeaders`.
    const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
    /// `BufferType::HttpCallResponseBody`.
    const HTTP_CALL_RESPONSE_BODY: u32 = 4;

    // Statuses and enums cross as u32: a code the filter does not know stays a number.
    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
        fn proxy_get_log_level(return_level: *mut u32) -> u32;
        fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
        fn proxy_get_buffer_bytes(
            buffer_type: u32,
            start: usize,
            max_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_define_metric(
            metric_type: u32,
            name_data: *const u8,
            name_size: usize,
            return_id: *mut u32,
        ) -> u32;
        fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
        fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
        fn proxy_get_shared_data(
            key_data: *const u8,
            key_size: usize,
            return_value_data: *mut *mut u8,
            return_value_size: *mut usize,
            return_cas: *mut u32,
        ) -> u32;
        fn proxy_set_shared_data(
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
            cas: u32,
        ) -> u32;
        fn proxy_get_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(
            map_type: u32,
            key_data: *const u8,
            key_size: usize,
        ) -> u32;
        fn proxy_get_property(
            path_data: *const u8,
            path_size: usize,
            return_data: *mut *mut u8,
            return_size: *mut usize,
        ) -> u32;
        fn proxy_set_property(
            path_data: *const u8,
            path_size: usize,
            value_data: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_send_local_response(
            status_code: u32,
            details_data: *const u8,
            details_size: usize,
            body_data: *const u8,
            body_size: usize,
            headers_data: *const u8,
            headers_size: usize,
            grpc_status: i32,
        ) -> u32;
        fn proxy_close_stream(stream_type: u32) -> u32;
    }

    fn check(status: u32) -> Result<(), HostError> {
        if status == OK {
            Ok(())
        } else {
            Err(HostError(status))
        }
    }

    /// Takes ownership of a buffer the host allocated in the VM (None: the host returned none).
    ///
    /// # Safety
    /// `data` is null or was returned by `proxy_on_memory_allocate(size)` and not used since.
    unsafe fn owned(data: *mut u8, size: usize) -> Vec<u8> {
        if data.is_null() {
            Vec::new()
        } else {
            // SAFETY: the SDK's allocator made a boxed [u8] of exactly `size` bytes (align 1).
            unsafe { Vec::from_raw_parts(data, size, size) }
        }
    }

    /// A call that returns a buffer: Ok(None) on NotFound.
    fn returned(
        call: impl FnOnce(*mut *mut u8, *mut usize) -> u32,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let (mut data, mut size) = (null_mut(), 0usize);
        match call(&mut data, &mut size) {
            // SAFETY: on Ok the host set `data`/`size` from proxy_on_memory_allocate (or null).
            OK => Ok(Some(unsafe { owned(data, size) })),
            NOT_FOUND => Ok(None),
            status => Err(HostError(status)),
        }
    }

    /// Writes a log line at `level` (0 trace … 5 critical).
    pub fn log(level: u32, message: &str) -> Result<(), HostError> {
        note(Kind::Log);
        check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
    }

    /// Envoy's log level for the wasm component (0 trace … 5 critical).
    pub fn log_level() -> Result<u32, HostError> {
        note(Kind::GetLogLevel);
        let mut level = 0u32;
        check(unsafe { proxy_get_log_level(&mut level) })?;
        Ok(level)
    }

    /// Asks for `on_tick` every `millis` ms.
    pub fn set_tick_period(millis: u32) -> Result<(), HostError> {
        note(Kind::SetTickPeriod);
        check(unsafe { proxy_set_tick_period_milliseconds(millis) })
    }

    /// The plugin configuration's bytes (empty when there is none).
    pub fn plugin_configuration(size: usize) -> Result<Vec<u8>, HostError> {
        note(Kind::GetBufferBytes);
        returned(|data, len| unsafe {
            proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, data, len)
        })
        .map(Option::unwrap_or_default)
    }

    /// Defines (or finds) the counter `name`; its id.
    pub fn define_counter(name: &str) -> Result<u32, HostError> {
        note(Kind::DefineMetric);
        let mut id = 0u32;
        check(unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    /// Adds `delta` to a counter.
    pub fn increment_metric(id: u32, delta: i64) -> Result<(), HostError> {
        note(Kind::IncrementMetric);
        check(unsafe { proxy_increment_metric(id, delta) })
    }

    /// Defines (or finds) the gauge `name`; its id.
    pub fn define_gauge(name: &str) -> Result<u32, HostError> {
        note(Kind::DefineMetric);
        let mut id = 0u32;
        check(unsafe { proxy_define_metric(GAUGE, name.as_ptr(), name.len(), &mut id) })?;
        Ok(id)
    }

    /// Sets a gauge.
    pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
        note(Kind::RecordMetric);
        check(unsafe { proxy_record_metric(id, value) })
    }

    /// The host's wall clock, in ms since the epoch (the same in every VM of the process).
    pub fn now_ms() -> Result<u64, HostError> {
        note(Kind::GetCurrentTime);
        let mut ns = 0u64;
        check(unsafe { proxy_get_current_time_nanoseconds(&mut ns) })?;
        Ok(ns / 1_000_000)
    }

    /// A shared-data value and its CAS token; Ok(None) when the key has none. Envoy copies the
    /// whole value under a process-wide lock: keep polled values small.
    pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        note(Kind::GetSharedData);
        let (mut data, mut size, mut cas) = (null_mut(), 0usize, 0u32);
        match unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        } {
            // SAFETY: on Ok the host set `data`/`size` from proxy_on_memory_allocate (or null).
            OK => Ok(Some((unsafe { owned(data, size) }, cas))),
            NOT_FOUND => Ok(None),
            status => Err(HostError(status)),
        }
    }

    /// Sets a shared-data value; with `cas` other than 0, only if the value's CAS token is still
    /// `cas` (else `CasMismatch`).
    pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        note(Kind::SetSharedData);
        check(unsafe {
            proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
        })
    }

    /// Sends `GET` for `path` with `:authority` `authority` and `headers` to the Envoy
    /// `cluster`, with a timeout (ms; 0 would mean none, so it is at least 1). The response comes
    /// to the calling root context's `on_http_call_response` with the returned token. Goes
    /// through the SDK, whose dispatcher must know the token to route the response; its call
    /// returns BadArgument (unknown cluster) and InternalFailure as errors.
    pub fn dispatch_get(
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        note(Kind::DispatchHttpCall);
        let mut all = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
        ];
        all.extend_from_slice(headers);
        let timeout = std::time::Duration::from_millis(u64::from(timeout_ms.max(1)));
        proxy_wasm::hostcalls::dispatch_http_call(cluster, all, None, Vec::new(), timeout)
            .map_err(|status| HostError(status as u32))
    }

    /// The response headers of the HTTP call being delivered.
    pub fn http_call_response_headers() -> Result<Vec<(String, String)>, HostError> {
        note(Kind::GetHeaderMapPairs);
        let bytes = returned(|data, len| unsafe {
            proxy_get_header_map_pairs(HTTP_CALL_RESPONSE_HEADERS, data, len)
        })?
        .unwrap_or_default();
        deserialize_pairs(&bytes).ok_or(HostError(SERIALIZATION_FAILURE))
    }

    /// The response body of the HTTP call being delivered (`size` bytes).
    pub fn http_call_response_body(size: usize) -> Result<Vec<u8>, HostError> {
        note(Kind::GetBufferBytes);
        returned(|data, len| unsafe {
            proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, size, data, len)
        })
        .map(Option::unwrap_or_default)
    }

    /// The value of the request header `name` (Envoy returns the first line's; it joins the
    /// lines of its inline headers, X-Forwarded-For among them, with commas).
    pub fn request_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
        note(Kind::GetHeaderMapValue);
        returned(|data, len| unsafe {
            proxy_get_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len(), data, len)
        })
    }

    /// Every request header line, in wire order.
    pub fn request_header_lines() -> Result<Vec<(String, String)>, HostError> {
        note(Kind::GetHeaderMapPairs);
        let bytes = returned(|data, len| unsafe {
            proxy_get_header_map_pairs(REQUEST_HEADERS, data, len)
        })?
        .unwrap_or_default();
        deserialize_pairs(&bytes).ok_or(HostError(SERIALIZATION_FAILURE))
    }

    /// Sets the request header `name` to `value`, replacing every line it had.
    pub fn set_request_header(name: &str, value: &str) -> Result<(), HostError> {
        note(Kind::ReplaceHeaderMapValue);
        check(unsafe {
            proxy_replace_header_map_value(
                REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            )
        })
    }

    /// Removes every line of the request header `name`.
    pub fn remove_request_header(name: &str) -> Result<(), HostError> {
        note(Kind::RemoveHeaderMapValue);
        check(unsafe { proxy_remove_header_map_value(REQUEST_HEADERS, name.as_ptr(), name.len()) })
    }

    /// A property's bytes; Ok(None) when absent.
    pub fn property(path: &PropertyPath) -> Result<Option<Vec<u8>>, HostError> {
        note(Kind::GetProperty);
        returned(|data, len| unsafe {
            proxy_get_property(path.0.as_ptr(), path.0.len(), data, len)
        })
    }

    /// Sets a property (`["client_ip"]` lands in the stream's filter state as `wasm.client_ip`).
    pub fn set_property(path: &PropertyPath, value: &[u8]) -> Result<(), HostError> {
        note(Kind::SetProperty);
        check(unsafe {
            proxy_set_property(path.0.as_ptr(), path.0.len(), value.as_ptr(), value.len())
        })
    }

    /// Closes the downstream connection of a network filter. Envoy closes it right after the
    /// current callback returns (flushing nothing: the filter wrote nothing).
    pub fn close_downstream() -> Result<(), HostError> {
        note(Kind::CloseStream);
        check(unsafe { proxy_close_stream(DOWNSTREAM) })
    }

    /// Answers the request locally; `headers` is a map from [`super::serialize_pairs`];
    /// `details` becomes `%RESPONSE_CODE_DETAILS%` (no spaces).
    pub fn send_local_response(
        status: u32,
        body: &[u8],
        headers: &[u8],
        details: &str,
    ) -> Result<(), HostError> {
        note(Kind::SendLocalResponse);
        check(unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_pairs_round_trip() {
        let pairs = [
            (":path", "/a"),
            ("x-forwarded-for", "1.2.3.4, 5.6.7.8"),
            ("empty", ""),
        ];
        let bytes = serialize_pairs(&pairs);
        let back = deserialize_pairs(&bytes).unwrap();
        let back: Vec<(&str, &str)> = back.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(back, pairs);
        assert_eq!(deserialize_pairs(&[]), Some(Vec::new()));
    }

    #[test]
    fn header_values_with_invalid_utf8_become_replacement_characters() {
        let mut bytes = serialize_pairs(&[("x-real-ip", "caf?")]);
        let at = bytes.iter().position(|&b| b == b'?').unwrap();
        bytes[at] = 0xe9;
        let pairs = deserialize_pairs(&bytes).unwrap();
        assert_eq!(pairs[0].1, "caf\u{fffd}");
    }

    #[test]
    fn malformed_header_maps_are_refused_not_read_out_of_bounds() {
        let good = serialize_pairs(&[("a", "bc"), ("d", "e")]);
        // Every truncation, and sizes pointing past the end.
        for cut in 1..good.len() {
            assert_eq!(deserialize_pairs(&good[..cut]), None, "cut at {cut}");
        }
        let mut huge = good.clone();
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(deserialize_pairs(&huge), None);
        let mut long_value = good.clone();
        long_value[8..12].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(deserialize_pairs(&long_value), None);
    }

    #[test]
    fn property_paths_are_nul_joined() {
        let path = PropertyPath::new(&["filter_state", "client_ip.downstream_address"]);
        assert_eq!(&*path.0, b"filter_state\0client_ip.downstream_address");
        assert_eq!(
            PropertyPath::new(&["source", "address"]),
            PropertyPath::fixed(b"source\0address")
        );
    }
}
