//! Envoy's dynamic-module C ABI (Envoy 1.40) for what an HTTP filter *configuration* does on its
//! own, outside any request, declared by hand: HTTP callouts, a scheduler that runs a hook on the
//! main thread, and the configuration's counters and gauges. List sources use them
//! ([`crate::sources`]). Counters are defined with [`super`]'s `..._config_define_counter`.
//!
//! Threads: the callout and the metrics calls are made on the main thread (from the
//! configuration's hooks); `scheduler_commit` may be called from any thread and makes Envoy call
//! `on_http_filter_config_scheduled` on the main thread.

use std::ffi::c_void;

use super::{EnvoyBuffer, ModuleBuffer};

/// Envoy's side of an HTTP filter configuration.
pub type ConfigEnvoyPtr = *mut c_void;
/// The module's side of an HTTP filter configuration.
pub type ConfigModulePtr = *const c_void;
/// A configuration's scheduler.
pub type SchedulerPtr = *mut c_void;

/// A request header owned by the module (`envoy_dynamic_module_type_module_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleHeader {
    /// Name.
    pub key: ModuleBuffer,
    /// Value.
    pub value: ModuleBuffer,
}

/// A response header owned by Envoy (`envoy_dynamic_module_type_envoy_http_header`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyHeader {
    /// Name.
    pub key: EnvoyBuffer,
    /// Value.
    pub value: EnvoyBuffer,
}

/// `envoy_dynamic_module_type_http_callout_init_result`.
pub mod init_result {
    /// The request is sent.
    pub const SUCCESS: u32 = 0;
    /// `:method`, `:path` or `:authority` is missing.
    pub const MISSING_REQUIRED_HEADERS: u32 = 1;
    /// No cluster of that name.
    pub const CLUSTER_NOT_FOUND: u32 = 2;
    /// The id is in use.
    pub const DUPLICATE_CALLOUT_ID: u32 = 3;
    /// Envoy could not make the request (e.g. no healthy host).
    pub const CANNOT_CREATE_REQUEST: u32 = 4;
}

/// `envoy_dynamic_module_type_http_callout_result`.
pub mod callout_result {
    /// A response (of any status).
    pub const SUCCESS: u32 = 0;
    /// The stream was reset (connection refused, timeout, …).
    pub const RESET: u32 = 1;
    /// The body was larger than Envoy buffers for a callout.
    pub const EXCEED_RESPONSE_BUFFER_LIMIT: u32 = 2;
}

extern "C" {
    /// Sends a request to `cluster`; its id in `id`. The response comes to
    /// `on_http_filter_config_http_callout_done` (main thread).
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigEnvoyPtr,
        id: *mut u64,
        cluster: ModuleBuffer,
        headers: *const ModuleHeader,
        headers_len: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;

    /// A scheduler for `config`; deleted with `scheduler_delete`.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigEnvoyPtr,
    ) -> SchedulerPtr;
    /// Asks Envoy to call `on_http_filter_config_scheduled(…, event)` on the main thread.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event: u64,
    );
    /// Deletes a scheduler.
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );

    /// Defines a gauge (no labels); its id in `id`. 0 on success.
    pub fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_len: usize,
        id: *mut usize,
    ) -> u32;
    /// Adds `value` to counter `id`. 0 on success.
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
    /// Sets gauge `id` to `value`. 0 on success.
    pub fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        config: ConfigEnvoyPtr,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_len: usize,
        value: u64,
    ) -> u32;
}
