//! Envoy's dynamic-module C ABI for network filters (`envoy.filters.network.dynamic_modules`,
//! Envoy 1.40), declared by hand: the event hooks Envoy calls are exported from
//! [`crate::network`]; these are the callbacks into Envoy the network filter uses.
//!
//! Threads (as Envoy calls them): the configuration hooks and the config-level callbacks run on
//! the main thread; a filter's hooks and callbacks on the worker that owns its connection, and a
//! filter pointer is only ever used there, while its hook runs.

use std::ffi::c_void;

use super::{EnvoyBuffer, ModuleBuffer};

/// Envoy's side of a network filter configuration.
pub type ConfigEnvoyPtr = *mut c_void;
/// The module's side of a network filter configuration.
pub type ConfigModulePtr = *const c_void;
/// Envoy's side of one connection's filter.
pub type FilterEnvoyPtr = *mut c_void;
/// The module's side of one connection's filter.
pub type FilterModulePtr = *const c_void;

/// `envoy_dynamic_module_type_on_network_filter_data_status`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// The filters after this one see the connection (or the data).
    Continue = 0,
    /// They do not: reading stops until the module continues it.
    StopIteration = 1,
}

/// `envoy_dynamic_module_type_network_connection_close_type` (Envoy's `ConnectionCloseType`).
#[repr(C)]
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseType {
    /// Writes what is pending, then closes.
    FlushWrite = 0,
    /// Closes at once.
    NoFlush = 1,
    /// Writes what is pending, closes after the delayed-close timeout.
    FlushWriteAndDelay = 2,
    /// Drops what is pending and closes.
    Abort = 3,
    /// Closes with a TCP reset.
    AbortReset = 4,
}

/// `envoy_dynamic_module_type_metrics_result`: 0 is success.
pub type MetricsResult = u32;

extern "C" {
    /// Defines a counter of the configuration (main thread, at configure time); its id in `id`.
    pub fn envoy_dynamic_module_callback_network_filter_config_define_counter(
        config: ConfigEnvoyPtr,
        name: ModuleBuffer,
        id: *mut usize,
    ) -> MetricsResult;

    /// Adds `value` to counter `id` (worker, in a hook of `filter`).
    pub fn envoy_dynamic_module_callback_network_filter_increment_counter(
        filter: FilterEnvoyPtr,
        id: usize,
        value: u64,
    ) -> MetricsResult;

    /// The connection's remote address: the PROXY protocol source when the listener filter read
    /// one, else the TCP peer. The IP as text in `address`, the port in `port`; false without an IP.
    pub fn envoy_dynamic_module_callback_network_filter_get_remote_address(
        filter: FilterEnvoyPtr,
        address: *mut EnvoyBuffer,
        port: *mut u32,
    ) -> bool;

    /// The TLS SNI; false when the connection has none.
    pub fn envoy_dynamic_module_callback_network_filter_get_requested_server_name(
        filter: FilterEnvoyPtr,
        value: *mut EnvoyBuffer,
    ) -> bool;

    /// A filter state object of the connection, as its string serialization; false when absent.
    pub fn envoy_dynamic_module_callback_network_get_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: *mut EnvoyBuffer,
    ) -> bool;

    /// Sets a string filter state object of the connection; false when Envoy refuses.
    pub fn envoy_dynamic_module_callback_network_set_filter_state_bytes(
        filter: FilterEnvoyPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    /// Closes the connection.
    pub fn envoy_dynamic_module_callback_network_filter_close(
        filter: FilterEnvoyPtr,
        close_type: CloseType,
    );
}
