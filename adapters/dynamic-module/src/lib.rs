//! client-ip-filter-module (draft on branch native-net): the Envoy dynamic-module adapter's
//! network filter and list sources, until they merge into helper split's crate.

pub mod abi;
pub mod http_stub;
pub mod logging;
pub mod network;
pub mod published;
pub mod sources;
pub mod store;
pub mod ticker;

/// The ABI version this module was written against, handed to Envoy when it loads the module.
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Envoy loaded the module: give the ABI version (Envoy checks it against its own).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const std::ffi::c_char {
    ABI_VERSION.as_ptr().cast()
}
