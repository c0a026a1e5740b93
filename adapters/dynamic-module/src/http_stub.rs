//! STAND-IN until the native HTTP filter (`http.rs`) lands: a pass-through HTTP filter whose
//! configuration runs the list sources ([`crate::sources`]), so that they are seen working in Envoy
//! (tests/test_native_sources.py, bench/native_memory.py). The HTTP filter replaces this whole file
//! (its exported symbols are the same): its configuration holds a [`Sources`]
//! (`Sources::start` in `on_http_filter_config_new`, `Sources::current` when a stream starts), and
//! its `on_http_filter_config_scheduled` and `on_http_filter_config_http_callout_done` forward to
//! `Sources::tick` and `Sources::response`, as the two hooks below do.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use log::{error, info, warn};

use client_ip_core::config;

use crate::abi::callout::{ConfigEnvoyPtr, ConfigModulePtr, EnvoyHeader};
use crate::abi::EnvoyBuffer;
use crate::sources::Sources;

/// One HTTP filter configuration.
pub struct HttpConfig {
    /// Its list sources, when a list names one.
    pub sources: Option<Sources>,
}

/// The sources of the configuration behind a configuration pointer Envoy hands back.
///
/// # Safety
/// `ptr` is null or a pointer made by `on_http_filter_config_new`, not yet destroyed.
pub unsafe fn sources_of<'a>(ptr: ConfigModulePtr) -> Option<&'a Sources> {
    ptr.cast::<HttpConfig>().as_ref()?.sources.as_ref()
}

#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    catch_unwind(AssertUnwindSafe(|| {
        crate::logging::refresh();
        let bytes = if config.ptr.is_null() {
            Vec::new()
        } else {
            // SAFETY: Envoy's buffer is valid during this hook.
            unsafe { std::slice::from_raw_parts(config.ptr.cast::<u8>(), config.length) }.to_vec()
        };
        let (policy, plan, warnings) = match config::parse_sourced(&bytes) {
            Ok(p) => p,
            Err(e) => {
                error!("invalid configuration: {e}");
                return std::ptr::null();
            }
        };
        for w in &warnings {
            warn!("configuration: {w}");
        }
        info!("configured: {} rule(s)", policy.access.rules.len());
        let sources = Sources::start(config_envoy, &bytes, policy, plan);
        Box::into_raw(Box::new(HttpConfig { sources }))
            .cast_const()
            .cast()
    }))
    .unwrap_or(std::ptr::null())
}

#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConfigModulePtr) {
    let _ = catch_unwind(|| {
        if !config.is_null() {
            // SAFETY: made by Box::into_raw in config_new, destroyed once here.
            drop(unsafe { Box::from_raw(config.cast::<HttpConfig>().cast_mut()) });
        }
    });
}

// ---- Event hooks of the configuration (main thread) -------------------------------------------

/// A tick asked for by the sources' ticker.
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    _event: u64,
) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: Envoy passes the configuration it was given, alive while this hook runs.
        if let Some(sources) = unsafe { sources_of(config) } {
            sources.tick();
        }
    });
}

/// The response to a fetch (or its failure). A panic here loses this response only: the machine
/// gives the fetch up after its timeout and the last good list keeps deciding.
#[no_mangle]
#[allow(clippy::not_unsafe_ptr_arg_deref)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    id: u64,
    result: u32,
    headers: *const EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as above; Envoy's headers and chunks are valid during this hook.
        unsafe {
            if let Some(sources) = sources_of(config) {
                sources.response(id, result, headers, headers_len, chunks, chunks_len);
            }
        }
    });
}

static FILTER: u8 = 0;

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new() -> *const c_void {
    (&FILTER as *const u8).cast()
}

macro_rules! continue_hooks {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() -> u32 { 0 }
    )*};
}

continue_hooks!(
    envoy_dynamic_module_on_http_filter_request_headers,
    envoy_dynamic_module_on_http_filter_request_body,
    envoy_dynamic_module_on_http_filter_request_trailers,
    envoy_dynamic_module_on_http_filter_response_headers,
    envoy_dynamic_module_on_http_filter_response_body,
    envoy_dynamic_module_on_http_filter_response_trailers,
    envoy_dynamic_module_on_http_filter_local_reply,
    envoy_dynamic_module_on_http_filter_per_route_config_new
);

macro_rules! void_hooks {
    ($($name:ident),*) => {$(
        #[no_mangle]
        pub extern "C" fn $name() {}
    )*};
}

void_hooks!(
    envoy_dynamic_module_on_http_filter_destroy,
    envoy_dynamic_module_on_http_filter_stream_complete,
    envoy_dynamic_module_on_http_filter_scheduled,
    envoy_dynamic_module_on_http_filter_http_callout_done,
    envoy_dynamic_module_on_http_filter_http_stream_headers,
    envoy_dynamic_module_on_http_filter_http_stream_data,
    envoy_dynamic_module_on_http_filter_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_http_stream_complete,
    envoy_dynamic_module_on_http_filter_http_stream_reset,
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark,
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark,
    envoy_dynamic_module_on_http_filter_per_route_config_destroy,
    envoy_dynamic_module_on_http_filter_config_http_stream_headers,
    envoy_dynamic_module_on_http_filter_config_http_stream_data,
    envoy_dynamic_module_on_http_filter_config_http_stream_trailers,
    envoy_dynamic_module_on_http_filter_config_http_stream_complete,
    envoy_dynamic_module_on_http_filter_config_http_stream_reset
);
