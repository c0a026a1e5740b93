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

/// The host calls a configuration's list sources make (the root context's: shared data, the
/// clock, HTTP calls to a list server, metrics), as a trait: the seam between
/// `adapter::sources` and Envoy. [`Abi`] is Envoy's; the adapter's native tests put a fake
/// shared-data store in its place (with Envoy's compare-and-swap, so conflicts can be made to
/// happen between a read and a write) and a fake list server.
pub trait SourceHost {
    /// See [`now_ms`].
    fn now_ms(&self) -> Result<u64, HostError>;
    /// See [`shared_data`].
    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError>;
    /// See [`set_shared_data`].
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError>;
    /// See [`dispatch_get`].
    fn dispatch_get(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError>;
    /// See [`http_call_response_headers`].
    fn http_call_response_headers(&self) -> Result<Vec<(String, String)>, HostError>;
    /// See [`http_call_response_body`].
    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError>;
    /// See [`define_counter`].
    fn define_counter(&self, name: &str) -> Result<u32, HostError>;
    /// See [`define_gauge`].
    fn define_gauge(&self, name: &str) -> Result<u32, HostError>;
    /// See [`increment_metric`].
    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError>;
    /// See [`record_metric`].
    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError>;
}

#[cfg(target_arch = "wasm32")]
impl SourceHost for Abi {
    #[inline(always)]
    fn now_ms(&self) -> Result<u64, HostError> {
        now_ms()
    }
    #[inline(always)]
    fn shared_data(&self, key: &str) -> Result<Option<(Vec<u8>, u32)>, HostError> {
        shared_data(key)
    }
    #[inline(always)]
    fn set_shared_data(&self, key: &str, value: &[u8], cas: u32) -> Result<(), HostError> {
        set_shared_data(key, value, cas)
    }
    #[inline(always)]
    fn dispatch_get(
        &self,
        cluster: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        timeout_ms: u32,
    ) -> Result<u32, HostError> {
        dispatch_get(cluster, authority, path, headers, timeout_ms)
    }
    #[inline(always)]
    fn http_call_response_headers(&self) -> Result<Vec<(String, String)>, HostError> {
        http_call_response_headers()
    }
    #[inline(always)]
    fn http_call_response_body(&self, size: usize) -> Result<Vec<u8>, HostError> {
        http_call_response_body(size)
    }
    #[inline(always)]
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        define_counter(name)
    }
    #[inline(always)]
    fn define_gauge(&self, name: &str) -> Result<u32, HostError> {
        define_gauge(name)
    }
    #[inline(always)]
    fn increment_metric(&self, id: u32, delta: i64) -> Result<(), HostError> {
        increment_metric(id, delta)
    }
    #[inline(always)]
    fn record_metric(&self, id: u32, value: u64) -> Result<(), HostError> {
        record_metric(id, value)
    }
}

/// Host calls counted by kind (cargo feature `count-host-calls`; `make bench` and the host-call
/// test build with it, the release `.wasm` does not). Calls made while a [`count::Background`]
/// guard lives (the root's configure, tick, HTTP-call responses, done) are not counted: what is
/// left is what requests and connections cost, divided by [`count::context`]'s count. The root
/// reports the totals as counters `client_ip.host_calls.<call>` and `client_ip.host_calls.contexts`
/// from its tick ([`count::report`]). Without the feature every function here is an empty inline
/// one and the guard a zero-sized value: no code, no data.
#[path = "host/count.rs"]
pub mod count;

#[cfg(target_arch = "wasm32")]
pub use abi::*;

#[cfg(target_arch = "wasm32")]
#[path = "host/abi.rs"]
mod abi;

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
