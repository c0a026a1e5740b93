//! The calls one HTTP stream makes on Envoy, each handing its outcome back instead of assuming
//! it: [`StreamHost`] is what the per-request logic ([`crate::http`]) needs, [`Envoy`] makes the
//! calls through the C ABI ([`crate::abi`]), and natively (`cargo test`) a fake host stands in.
//!
//! Envoy's callbacks report a failure as `false` (or a metrics result); each becomes a
//! [`HostError`] naming the call, and the caller decides what it means (a header write refused
//! refuses the request). Buffers Envoy hands over are copied before the hook returns.

use std::fmt;

/// A callback that reported a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// The callback, without its `envoy_dynamic_module_callback_http_` prefix.
    pub call: &'static str,
    /// Its status: 0 for a callback returning `false`, else its metrics result.
    pub status: u32,
}

impl fmt::Debug for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed ({})", self.call, self.status)
    }
}

/// The host calls of one HTTP stream.
pub trait StreamHost {
    /// Filter state `key`, serialized; None when absent.
    fn filter_state(&mut self, key: &str) -> Option<Vec<u8>>;
    /// The `source.address` attribute (`ip:port`); None when Envoy has none.
    fn source_address(&mut self) -> Option<Vec<u8>>;
    /// Request header `name`, its lines joined by commas (as proxy-wasm's `get_map_value`
    /// gives it); None when absent.
    fn request_header(&mut self, name: &str) -> Result<Option<String>, HostError>;
    /// Every request header line, in order, into `lines` (its contents replaced; see
    /// [`refill`]: the strings already there are reused, so a worker's steady state allocates
    /// nothing per request).
    fn request_header_lines(&mut self, lines: &mut Vec<(String, String)>) -> Result<(), HostError>;
    /// Sets request header `name` (replacing every line of it).
    fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Removes request header `name`.
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// Adds a line to request header `name` (for a header the request has no line of: Envoy's
    /// add costs a tenth of its set, which searches the map for lines to replace).
    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    /// Writes filter state `key` (a string, `%FILTER_STATE(key:PLAIN)%`).
    fn set_filter_state(&mut self, key: &str, value: &str) -> Result<(), HostError>;
    /// Answers the request locally with a `text/plain` body and `%RESPONSE_CODE_DETAILS%`.
    fn send_local_response(&mut self, status: u32, body: &str, details: &str);
    /// Adds one to the counter Envoy gave `id`.
    fn increment_counter(&mut self, id: usize) -> Result<(), HostError>;
}

/// Bytes as text, invalid UTF-8 replaced by U+FFFD (a header value is not always UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `text` written into `out`, replacing what it held and keeping its buffer.
fn assign(out: &mut String, bytes: &[u8]) {
    out.clear();
    if bytes.is_ascii() {
        // Nearly every header is ASCII: a cheaper check than `from_utf8`'s, the same text.
        // SAFETY: ASCII is valid UTF-8.
        out.push_str(unsafe { std::str::from_utf8_unchecked(bytes) });
    } else {
        out.push_str(&String::from_utf8_lossy(bytes));
    }
}

/// `lines` made the header lines `parts` (name and value bytes, in order, as [`text`]), reusing
/// the strings `lines` already holds: a request's lines cost no allocation when the previous
/// request on the worker had as many lines, each as long.
pub fn refill<'b>(
    lines: &mut Vec<(String, String)>,
    parts: impl ExactSizeIterator<Item = (&'b [u8], &'b [u8])>,
) {
    let count = parts.len();
    lines.truncate(count);
    for (i, (name, value)) in parts.enumerate() {
        match lines.get_mut(i) {
            Some((n, v)) => {
                assign(n, name);
                assign(v, value);
            }
            None => lines.push((text(name), text(value))),
        }
    }
}

#[cfg(not(test))]
pub use envoy::{log, log_enabled, Envoy, EnvoyConfig};

#[cfg(not(test))]
mod envoy {
    use super::{text, HostError, StreamHost};
    use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, FilterEnvoyPtr, ModuleBuffer};

    /// The HTTP stream Envoy handed the current event hook.
    pub struct Envoy(pub FilterEnvoyPtr);

    fn failed(call: &'static str) -> HostError {
        HostError { call, status: 0 }
    }

    /// The bytes of a buffer Envoy filled in; None for a null one.
    ///
    /// # Safety
    /// `buffer` must be what Envoy wrote during the current event hook.
    unsafe fn copied(buffer: &EnvoyBuffer) -> Option<Vec<u8>> {
        if buffer.ptr.is_null() {
            return None;
        }
        Some(std::slice::from_raw_parts(buffer.ptr, buffer.length).to_vec())
    }

    /// The bytes of one part of a header line Envoy wrote (empty for a null pointer).
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` bytes Envoy wrote during the current event hook.
    unsafe fn part<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
        if ptr.is_null() {
            &[]
        } else {
            std::slice::from_raw_parts(ptr, len)
        }
    }

    impl StreamHost for Envoy {
        fn filter_state(&mut self, key: &str) -> Option<Vec<u8>> {
            let mut out = EnvoyBuffer::NULL;
            // SAFETY: the key outlives the call; Envoy writes `out` (valid until the hook ends).
            unsafe {
                let found = abi::envoy_dynamic_module_callback_http_get_filter_state_typed(
                    self.0,
                    ModuleBuffer::of(key.as_bytes()),
                    &mut out,
                );
                if found {
                    copied(&out)
                } else {
                    None
                }
            }
        }

        fn source_address(&mut self) -> Option<Vec<u8>> {
            let mut out = EnvoyBuffer::NULL;
            // SAFETY: as above.
            unsafe {
                let found = abi::envoy_dynamic_module_callback_http_filter_get_attribute_string(
                    self.0,
                    abi::ATTRIBUTE_SOURCE_ADDRESS,
                    &mut out,
                );
                if found {
                    copied(&out)
                } else {
                    None
                }
            }
        }

        fn request_header(&mut self, name: &str) -> Result<Option<String>, HostError> {
            let key = ModuleBuffer::of(name.as_bytes());
            let mut joined: Option<String> = None;
            let mut index = 0;
            loop {
                let mut out = EnvoyBuffer::NULL;
                let mut count = 0usize;
                // SAFETY: as above; `count` is written by Envoy.
                let (ok, value) = unsafe {
                    let ok = abi::envoy_dynamic_module_callback_http_get_header(
                        self.0,
                        abi::REQUEST_HEADER,
                        key,
                        &mut out,
                        index,
                        &mut count,
                    );
                    (ok, copied(&out))
                };
                if !ok && count == 0 && value.is_none() {
                    // No such header (Envoy reports a missing one as a failed read).
                    return Ok(joined);
                }
                let Some(value) = value else {
                    return if ok {
                        Ok(joined)
                    } else {
                        Err(failed("get_header"))
                    };
                };
                let value = text(&value);
                joined = Some(match joined {
                    None => value,
                    Some(mut all) => {
                        all.push(',');
                        all.push_str(&value);
                        all
                    }
                });
                index += 1;
                if index >= count {
                    return Ok(joined);
                }
            }
        }

        fn request_header_lines(
            &mut self,
            lines: &mut Vec<(String, String)>,
        ) -> Result<(), HostError> {
            /// Lines read into a buffer on the stack (more go to the heap).
            const ON_STACK: usize = 32;
            const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
                key_ptr: std::ptr::null(),
                key_length: 0,
                value_ptr: std::ptr::null(),
                value_length: 0,
            };
            // SAFETY: `size` is what Envoy reports; `buffer` has room for it and Envoy fills it in
            // with pointers valid until the hook returns (they are copied before it does).
            unsafe {
                let size = abi::envoy_dynamic_module_callback_http_get_headers_size(
                    self.0,
                    abi::REQUEST_HEADER,
                );
                let mut stack = [EMPTY; ON_STACK];
                let mut heap = Vec::new();
                let buffer: &mut [EnvoyHttpHeader] = if size <= ON_STACK {
                    &mut stack[..size]
                } else {
                    heap.resize(size, EMPTY);
                    &mut heap
                };
                if size != 0
                    && !abi::envoy_dynamic_module_callback_http_get_headers(
                        self.0,
                        abi::REQUEST_HEADER,
                        buffer.as_mut_ptr(),
                    )
                {
                    return Err(failed("get_headers"));
                }
                super::refill(
                    lines,
                    buffer.iter().map(|l| {
                        (
                            part(l.key_ptr, l.key_length),
                            part(l.value_ptr, l.value_length),
                        )
                    }),
                );
                Ok(())
            }
        }

        fn set_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
            // SAFETY: both buffers outlive the call.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_set_header(
                    self.0,
                    abi::REQUEST_HEADER,
                    ModuleBuffer::of(name.as_bytes()),
                    ModuleBuffer::of(value.as_bytes()),
                )
            };
            ok.then_some(()).ok_or(failed("set_header"))
        }

        fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
            // SAFETY: both buffers outlive the call.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_add_header(
                    self.0,
                    abi::REQUEST_HEADER,
                    ModuleBuffer::of(name.as_bytes()),
                    ModuleBuffer::of(value.as_bytes()),
                )
            };
            ok.then_some(()).ok_or(failed("add_header"))
        }

        fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
            // SAFETY: the key outlives the call; a null value removes the header.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_set_header(
                    self.0,
                    abi::REQUEST_HEADER,
                    ModuleBuffer::of(name.as_bytes()),
                    ModuleBuffer::NULL,
                )
            };
            ok.then_some(()).ok_or(failed("set_header (remove)"))
        }

        fn set_filter_state(&mut self, key: &str, value: &str) -> Result<(), HostError> {
            // SAFETY: both buffers outlive the call.
            let ok = unsafe {
                abi::envoy_dynamic_module_callback_http_set_filter_state_bytes(
                    self.0,
                    ModuleBuffer::of(key.as_bytes()),
                    ModuleBuffer::of(value.as_bytes()),
                )
            };
            ok.then_some(()).ok_or(failed("set_filter_state_bytes"))
        }

        fn send_local_response(&mut self, status: u32, body: &str, details: &str) {
            const NAME: &[u8] = b"content-type";
            const VALUE: &[u8] = b"text/plain";
            let mut headers = [abi::ModuleHttpHeader {
                key_ptr: NAME.as_ptr(),
                key_length: NAME.len(),
                value_ptr: VALUE.as_ptr(),
                value_length: VALUE.len(),
            }];
            // SAFETY: every buffer outlives the call.
            unsafe {
                abi::envoy_dynamic_module_callback_http_send_response(
                    self.0,
                    status,
                    headers.as_mut_ptr(),
                    headers.len(),
                    ModuleBuffer::of(body.as_bytes()),
                    ModuleBuffer::of(details.as_bytes()),
                )
            }
        }

        fn increment_counter(&mut self, id: usize) -> Result<(), HostError> {
            // SAFETY: no label values (the counters have no labels).
            let status = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                    self.0,
                    id,
                    std::ptr::null_mut(),
                    0,
                    1,
                )
            };
            if status == abi::METRICS_SUCCESS {
                Ok(())
            } else {
                Err(HostError {
                    call: "increment_counter",
                    status,
                })
            }
        }
    }

    /// The filter configuration Envoy is creating (`..._http_filter_config_new`).
    pub struct EnvoyConfig(pub abi::FilterConfigEnvoyPtr);

    impl EnvoyConfig {
        /// Defines counter `name` (Envoy allows it only while the configuration is created); the
        /// id Envoy gave it.
        pub fn define_counter(&self, name: &str) -> Result<usize, HostError> {
            define_counter(self.0, name)
        }
    }

    fn define_counter(config: abi::FilterConfigEnvoyPtr, name: &str) -> Result<usize, HostError> {
        let mut id = 0usize;
        // SAFETY: the name outlives the call; no label names; Envoy writes `id`.
        let status = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                config,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        if status == abi::METRICS_SUCCESS {
            Ok(id)
        } else {
            Err(HostError {
                call: "define_counter",
                status,
            })
        }
    }

    /// Logs `message` at `level` under Envoy's `dynamic_modules` logger.
    pub fn log(level: abi::LogLevel, message: &str) {
        // SAFETY: the message outlives the call.
        unsafe {
            abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes()))
        }
    }

    /// Whether Envoy logs `level` for the `dynamic_modules` logger.
    pub fn log_enabled(level: abi::LogLevel) -> bool {
        // SAFETY: a plain value.
        unsafe { abi::envoy_dynamic_module_callback_log_enabled(level) }
    }
}

#[cfg(test)]
mod tests {
    use super::refill;

    fn lines(parts: &[(&[u8], &[u8])], into: &mut Vec<(String, String)>) {
        refill(into, parts.iter().copied());
    }

    #[test]
    fn refilled_lines_are_exactly_the_new_requests_lines() {
        let mut kept = Vec::new();
        lines(&[(b"a", b"1"), (b"bb", b"22"), (b"c", b"3")], &mut kept);
        lines(&[(b"x", b"9")], &mut kept);
        assert_eq!(kept, [("x".to_string(), "9".to_string())]);
        lines(&[(b"p", b""), (b"q", b"long value")], &mut kept);
        assert_eq!(
            kept,
            [
                ("p".to_string(), String::new()),
                ("q".to_string(), "long value".to_string())
            ]
        );
    }

    #[test]
    fn a_refill_with_lines_as_long_reuses_the_strings_buffers() {
        let mut kept = Vec::new();
        lines(&[(b"x-forwarded-for", b"203.0.113.7")], &mut kept);
        let before = (kept[0].0.as_ptr(), kept[0].1.as_ptr());
        lines(&[(b"x-forwarded-for", b"198.51.100.1")], &mut kept);
        assert_eq!((kept[0].0.as_ptr(), kept[0].1.as_ptr()), before);
        assert_eq!(kept[0].1, "198.51.100.1");
    }

    #[test]
    fn invalid_utf8_in_a_refilled_line_is_replaced_as_text_replaces_it() {
        let mut kept = vec![("old".to_string(), "old".to_string())];
        lines(&[(b"h", b"a\xffb")], &mut kept);
        assert_eq!(kept[0].1, "a\u{fffd}b");
        assert_eq!(kept[0].1, super::text(b"a\xffb"));
    }
}
