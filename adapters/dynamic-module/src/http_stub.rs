//! DRAFT, branch native-net only: a pass-through HTTP filter whose configuration runs the list
//! sources ([`crate::sources`]), so that they can be seen working in Envoy before helper split's
//! HTTP filter (`http.rs`) lands. Its configuration hooks are replaced by split's, which hold a
//! [`Sources`] the same way and answer [`sources_of`].

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use log::{error, info, warn};

use client_ip_core::config;

use crate::abi::callout::{ConfigEnvoyPtr, ConfigModulePtr};
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
