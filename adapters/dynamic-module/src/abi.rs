//! Envoy's dynamic-module C ABI, the part this module uses: the types and the callbacks (functions
//! Envoy exports and the module calls), declared by hand from Envoy's `abi.h`. The event hooks
//! (functions the module exports and Envoy calls) are defined in [`crate::entry`].
//!
//! Every callback is `unsafe`: the pointers handed to Envoy must be valid for the call, and an
//! Envoy pointer must be the one Envoy gave the current event hook. Safe wrappers, each handing
//! the call's outcome back, are in [`crate::host`].
//!
//! C enums cross as their `int` values (`u32` here): each value used has a constant below.

use std::ffi::c_void;

pub mod callout;
pub mod network;

/// The ABI version this module is written against (`ENVOY_DYNAMIC_MODULES_ABI_VERSION` of Envoy
/// 1.40.0), returned by `envoy_dynamic_module_on_program_init`. Envoy logs "Dynamic module ABI
/// version v0.2.0 matched." at load when it is the same, and a warning when not.
pub const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's `DynamicModuleHttpFilterConfig` (one per filter configuration).
pub type FilterConfigEnvoyPtr = *mut c_void;
/// Envoy's `DynamicModuleHttpFilter` (one per HTTP stream).
pub type FilterEnvoyPtr = *mut c_void;

/// A buffer Envoy owns (valid until the end of the current event hook).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    /// A null buffer, for Envoy to fill in.
    pub const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A buffer the module owns (valid for the call it is passed to).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// The buffer of `bytes` (borrowed for the call).
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    /// A null buffer: "no value" (`set_header` removes the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header the module owns (the local reply's headers).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// A header line Envoy owns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`: the request headers.
pub const REQUEST_HEADER: u32 = 0;

/// `envoy_dynamic_module_type_attribute_id`: `source.address` (the downstream remote address,
/// the PROXY protocol's source when the listener has the proxy_protocol filter).
pub const ATTRIBUTE_SOURCE_ADDRESS: u32 = 24;

/// `envoy_dynamic_module_type_metrics_result`: success (the others are failures).
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status`.
pub const HEADERS_CONTINUE: u32 = 0;
/// Stops the filter chain: the request never goes upstream (after a local reply).
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// `..._request_body_status` / `..._response_body_status`: Continue.
pub const BODY_CONTINUE: u32 = 0;
/// `..._trailers_status`: Continue.
pub const TRAILERS_CONTINUE: u32 = 0;

/// `envoy_dynamic_module_type_log_level`, Trace (0) to Critical (5) and Off (6).
pub type LogLevel = u32;

extern "C" {
    /// Logs `message` under Envoy's `dynamic_modules` logger.
    pub fn envoy_dynamic_module_callback_log(level: LogLevel, message: ModuleBuffer);

    /// Whether `level` is enabled for the `dynamic_modules` logger.
    pub fn envoy_dynamic_module_callback_log_enabled(level: LogLevel) -> bool;

    /// Defines a counter (only while the configuration is being created); its id in `id_out`.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;

    /// Increments a counter of the configuration that created `filter`.
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    /// The `index`th value of header `key` in `result` (null when absent); the number of values
    /// in `optional_size` when not null.
    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;

    /// The number of header lines of the map.
    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: FilterEnvoyPtr,
        header_type: u32,
    ) -> usize;

    /// Every header line of the map into `result_headers` (room for the size above).
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterEnvoyPtr,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;

    /// Sets header `key` to `value`, replacing every line of it; a null `value` removes it.
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Adds a line `key: value` (the lines already there stay).
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Answers the request locally (Envoy's sendLocalReply) with `details` as
    /// `%RESPONSE_CODE_DETAILS%`.
    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_length: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    /// Writes filter state `key` as bytes (a string accessor: `%FILTER_STATE(key:PLAIN)%`).
    pub fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Reads filter state `key`, serialized as a string (any object type that serializes).
    pub fn envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;

    /// Reads a string attribute (`source.address`, ...).
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterEnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
}
