//! An Envoy dynamic module (ABI v0.2.0, Envoy 1.40) whose HTTP filter does nothing: the floor of
//! `make bench`'s native cases (DM-NOOP). It exports every HTTP hook Envoy requires; each continues
//! and calls nothing back. The configuration and every stream share one static, non-null pointer
//! (there is no state), so nothing is allocated or freed per stream.

use std::ffi::c_void;

/// What Envoy checks against its own ABI version at load.
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// The in-module pointer of the configuration and of every stream (never dereferenced).
static STATE: u8 = 0;

fn state() -> *const c_void {
    &STATE as *const u8 as *const c_void
}

/// Envoy's buffer (pointer and length), as the hooks receive it.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// The module's ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// Any configuration: accepted, ignored.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    _config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    state()
}

/// A stream: the shared pointer.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    _config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    state()
}

/// Hooks returning a status: continue (every `..._Continue` of the ABI is 0).
macro_rules! pass {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> u32 {
            $(let _ = $arg;)*
            0
        }
    )*};
}

pass! {
    envoy_dynamic_module_on_http_filter_request_headers(f: *mut c_void, m: *const c_void, e: bool);
    envoy_dynamic_module_on_http_filter_request_body(f: *mut c_void, m: *const c_void, e: bool);
    envoy_dynamic_module_on_http_filter_request_trailers(f: *mut c_void, m: *const c_void);
    envoy_dynamic_module_on_http_filter_response_headers(f: *mut c_void, m: *const c_void, e: bool);
    envoy_dynamic_module_on_http_filter_response_body(f: *mut c_void, m: *const c_void, e: bool);
    envoy_dynamic_module_on_http_filter_response_trailers(f: *mut c_void, m: *const c_void);
}

/// Hooks with no result.
macro_rules! ignore {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) {
            $(let _ = $arg;)*
        }
    )*};
}

ignore! {
    envoy_dynamic_module_on_http_filter_config_destroy(c: *const c_void);
    envoy_dynamic_module_on_http_filter_config_scheduled(c: *mut c_void, m: *const c_void, e: u64);
    envoy_dynamic_module_on_http_filter_config_http_callout_done(c: *mut c_void, m: *const c_void, id: u64, r: u32, h: *const c_void, hs: usize, b: *const c_void, bs: usize);
    envoy_dynamic_module_on_http_filter_stream_complete(f: *mut c_void, m: *const c_void);
    envoy_dynamic_module_on_http_filter_destroy(m: *const c_void);
    envoy_dynamic_module_on_http_filter_http_callout_done(f: *mut c_void, m: *const c_void, id: u64, r: u32, h: *mut c_void, hs: usize, b: *mut c_void, bs: usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(f: *mut c_void, m: *const c_void, id: u64, h: *mut c_void, hs: usize, e: bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(f: *mut c_void, m: *const c_void, id: u64, d: *const c_void, ds: usize, e: bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(f: *mut c_void, m: *const c_void, id: u64, t: *mut c_void, ts: usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(f: *mut c_void, m: *const c_void, id: u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(f: *mut c_void, m: *const c_void, id: u64, r: u32);
    envoy_dynamic_module_on_http_filter_scheduled(f: *mut c_void, m: *const c_void, id: u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(f: *mut c_void, m: *const c_void);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(f: *mut c_void, m: *const c_void);
}
