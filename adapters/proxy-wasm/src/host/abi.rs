//! The proxy-wasm ABI itself: each import Envoy provides, wrapped so that its status comes back
//! as a [`HostError`](super::HostError) instead of a panic.

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
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
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
    match unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) }
    {
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
    let bytes =
        returned(|data, len| unsafe { proxy_get_header_map_pairs(REQUEST_HEADERS, data, len) })?
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
    returned(|data, len| unsafe { proxy_get_property(path.0.as_ptr(), path.0.len(), data, len) })
}

/// Sets a property (`["client_ip"]` lands in the stream's filter state as `wasm.client_ip`).
pub fn set_property(path: &PropertyPath, value: &[u8]) -> Result<(), HostError> {
    note(Kind::SetProperty);
    check(unsafe { proxy_set_property(path.0.as_ptr(), path.0.len(), value.as_ptr(), value.len()) })
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
