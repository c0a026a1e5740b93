//! Envoy's dynamic-module C ABI (Envoy 1.40), declared by hand: the common types and calls; the
//! network filter's in [`network`]. (Draft on branch native-net: the HTTP filter's binding is
//! helper split's `abi.rs`, which this file merges into.)

use std::ffi::c_char;

pub mod callout;
pub mod network;

/// Bytes owned by Envoy (`envoy_dynamic_module_type_envoy_buffer`), lent for one hook.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EnvoyBuffer {
    /// First byte (may be null when empty).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

/// Bytes owned by the module (`envoy_dynamic_module_type_module_buffer`), lent for one call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleBuffer {
    /// First byte.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

extern "C" {
    /// Writes a line to Envoy's log (component `dynamic_modules`) at `level` (0 trace … 5 critical).
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    /// Whether Envoy logs `level` for dynamic modules.
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
}
