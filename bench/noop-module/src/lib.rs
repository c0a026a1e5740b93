//! An Envoy dynamic module (ABI v0.2.0, Envoy 1.40) whose HTTP filter does nothing: the floor of
//! `make bench`'s native cases. It exports every HTTP hook Envoy requires; each continues.
//!
//! With the configuration `""` (case DM-NOOP) it calls nothing back. With `"host-calls"` (case
//! DM-CALLS) its request-headers hook makes exactly the host calls client-ip-filter's native build
//! makes for an admitted request with the default configuration, and nothing else: the filter
//! state read of the downstream address, every request header line read, `x-real-ip` added, filter
//! state `wasm.client_ip` written and one counter incremented: what those calls cost in Envoy, the
//! part of (DM-C)'s cost no filter doing that work can avoid.

// The hooks are Envoy's to call, with the pointers it made: they hand them back to its callbacks.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::c_void;

/// What Envoy checks against its own ABI version at load.
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy's buffer (pointer and length), as the hooks receive it and callbacks fill it in.
#[repr(C)]
pub struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// A buffer of the module's, passed to a callback.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// A header line Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type`: the request headers.
const REQUEST_HEADER: u32 = 0;

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id_out: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_get_headers_size(
        filter: *mut c_void,
        header_type: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        header_type: u32,
        result_headers: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter: *mut c_void,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
}

/// One filter configuration: whether its requests make the host calls, and its counter's id.
struct Config {
    host_calls: bool,
    counter: usize,
}

/// The module's ABI version.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    ABI_VERSION.as_ptr()
}

/// `""` or `"host-calls"` (see the module comment); anything else is refused (null).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    let text: &[u8] = if config.ptr.is_null() {
        &[]
    } else {
        // SAFETY: Envoy's buffer, valid during this hook.
        unsafe { std::slice::from_raw_parts(config.ptr, config.length) }
    };
    let host_calls = match text {
        b"" => false,
        b"host-calls" => true,
        _ => return std::ptr::null(),
    };
    let mut counter = 0;
    if host_calls {
        // SAFETY: the name outlives the call; Envoy writes `counter`.
        let status = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                config_envoy,
                ModuleBuffer::of(b"noop_module.requests"),
                std::ptr::null_mut(),
                0,
                &mut counter,
            )
        };
        if status != 0 {
            return std::ptr::null();
        }
    }
    Box::into_raw(Box::new(Config {
        host_calls,
        counter,
    })) as *const c_void
}

/// A stream: the configuration's pointer (a stream has no state of its own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    config
}

/// The request headers: continue, after (DM-CALLS) client-ip-filter's host calls.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: the configuration's box (filter_new), alive while its streams are.
    let Some(config) = (unsafe { (filter as *const Config).as_ref() }) else {
        return 0;
    };
    if config.host_calls {
        // SAFETY: every buffer outlives its call; `lines` has room for the size Envoy gave.
        unsafe { host_calls(filter_envoy, config.counter) };
    }
    0
}

/// client-ip-filter's calls for an admitted request (default configuration, client 127.0.0.1).
///
/// # Safety
/// `filter` must be the stream Envoy handed the current hook.
unsafe fn host_calls(filter: *mut c_void, counter: usize) {
    const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
    let mut out = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
    envoy_dynamic_module_callback_http_get_filter_state_typed(
        filter,
        ModuleBuffer::of(b"client_ip.downstream_address"),
        &mut out,
    );
    let size = envoy_dynamic_module_callback_http_get_headers_size(filter, REQUEST_HEADER);
    let mut lines = [EMPTY; 64];
    if size <= lines.len() {
        envoy_dynamic_module_callback_http_get_headers(filter, REQUEST_HEADER, lines.as_mut_ptr());
    }
    // The bench's requests carry no x-real-ip: the filter adds the header rather than set it.
    envoy_dynamic_module_callback_http_add_header(
        filter,
        REQUEST_HEADER,
        ModuleBuffer::of(b"x-real-ip"),
        ModuleBuffer::of(b"127.0.0.1"),
    );
    envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter,
        ModuleBuffer::of(b"wasm.client_ip"),
        ModuleBuffer::of(b"127.0.0.1"),
    );
    envoy_dynamic_module_callback_http_filter_increment_counter(
        filter,
        counter,
        std::ptr::null_mut(),
        0,
        1,
    );
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

/// Envoy dropped a filter configuration: free it.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: the pointer config_new made, handed back once.
        drop(unsafe { Box::from_raw(config as *mut Config) });
    }
}
