//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), exported by the `.so`.
//!
//! Each hook runs its work inside [`std::panic::catch_unwind`] and fails closed when it panics:
//! the configuration is rejected, the stream is refused (a 500 local reply, and the filter chain
//! stopped), a new stream is not created. Hooks this filter has no use for (bodies, trailers,
//! response headers, callouts, scheduling, watermarks) are defined because Envoy requires every
//! HTTP filter hook of the ABI, and only continue.
//!
//! The in-module configuration is a boxed [`HttpConfig`], owned by Envoy's filter configuration
//! until `..._http_filter_config_destroy`; each stream's in-module pointer is that same box (a
//! stream holds no state of its own, and Envoy keeps the configuration alive while its streams
//! live), so `..._http_filter_destroy` frees nothing. With list sources (docs/sources.md) the
//! configuration also runs them on the main thread (`..._config_scheduled`,
//! `..._config_http_callout_done`), and a request is decided with the [`Compiled`] bound to the
//! lists current when its headers arrive.

/// One HTTP filter configuration.
struct HttpConfig {
    /// Compiled with the configuration's own entries (the lists naming no source).
    compiled: Compiled,
    /// Its list sources, publishing `compiled` bound to their current lists.
    sources: Option<Sources<Compiled>>,
}

impl HttpConfig {
    /// Decides with the configuration current now.
    fn with<R>(&self, f: impl FnOnce(&Compiled) -> R) -> R {
        match &self.sources {
            Some(sources) => f(&sources.current()),
            None => f(&self.compiled),
        }
    }
}

use std::ffi::c_void;
use std::panic::catch_unwind;

use crate::abi::{self, EnvoyBuffer, FilterConfigEnvoyPtr, FilterEnvoyPtr};
use crate::config::Compiled;
use crate::guard::guarded;
use crate::host::{self, Envoy, EnvoyConfig};
use crate::http::{self, Next};
use crate::sources::Sources;

/// `log` records to Envoy's `dynamic_modules` logger, at the levels Envoy has enabled for it.
struct EnvoyLogger;

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        host::log_enabled(level(metadata.level()))
    }

    fn log(&self, record: &log::Record) {
        let level = level(record.level());
        if host::log_enabled(level) {
            host::log(level, &record.args().to_string());
        }
    }

    fn flush(&self) {}
}

fn level(level: log::Level) -> abi::LogLevel {
    match level {
        log::Level::Trace => 0,
        log::Level::Debug => 1,
        log::Level::Info => 2,
        log::Level::Warn => 3,
        log::Level::Error => 4,
    }
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// The bytes of a buffer Envoy passed to the current hook (empty for a null one).
///
/// # Safety
/// `buffer` must be valid for the current hook.
unsafe fn bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(buffer.ptr, buffer.length)
    }
}

/// Called once when Envoy loads the module: its ABI version, which Envoy checks against its own
/// (a mismatch is logged as a warning by Envoy).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const u8 {
    guarded(std::ptr::null, || {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        abi::ABI_VERSION.as_ptr()
    })
}

/// A filter configuration: compiled once; null (Envoy rejects it) on an error, logged.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded(
        || {
            log::error!("invalid configuration: the filter failed while compiling it");
            std::ptr::null()
        },
        || {
            // SAFETY: Envoy's buffer, valid during this hook.
            let json = unsafe { bytes(config) };
            let envoy = EnvoyConfig(config_envoy);
            match Compiled::sourced(json, |name| envoy.define_counter(name)) {
                Ok((compiled, plan)) => {
                    let template = compiled.with_policy(compiled.policy.clone(), None);
                    let sources = Sources::start(
                        config_envoy,
                        json,
                        compiled.policy.clone(),
                        plan,
                        move |b| template.with_policy(b.policy, Some(b.lists)),
                    );
                    Box::into_raw(Box::new(HttpConfig { compiled, sources })) as *const c_void
                }
                Err(line) => {
                    log::error!("{line}");
                    std::ptr::null()
                }
            }
        },
    )
}

/// Envoy dropped the filter configuration: free the compiled one.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded(
        || (),
        || {
            if !config.is_null() {
                // SAFETY: the pointer config_new made, handed back once.
                drop(unsafe { Box::from_raw(config as *mut HttpConfig) });
            }
        },
    )
}

/// A tick of the configuration's list sources (main thread, asked for by their ticker).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    _event: u64,
) {
    guarded(
        || log::error!("sources: the filter failed during a tick"),
        || {
            // SAFETY: the configuration's box, alive while Envoy calls its hooks.
            if let Some(sources) =
                unsafe { (config as *const HttpConfig).as_ref() }.and_then(|c| c.sources.as_ref())
            {
                sources.tick();
            }
        },
    )
}

/// The response to a list source's fetch, or its failure (main thread). A panic loses this
/// response only: the fetch is given up after its timeout and the last good list keeps deciding.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    id: u64,
    result: u32,
    headers: *const abi::callout::EnvoyHeader,
    headers_len: usize,
    chunks: *const EnvoyBuffer,
    chunks_len: usize,
) {
    guarded(
        || log::error!("sources: the filter failed while reading a response"),
        || {
            // SAFETY: as above; Envoy's headers and chunks are valid during this hook.
            unsafe {
                if let Some(sources) = (config as *const HttpConfig)
                    .as_ref()
                    .and_then(|c| c.sources.as_ref())
                {
                    sources.response(id, result, headers, headers_len, chunks, chunks_len);
                }
            }
        },
    )
}

/// A new stream: its in-module pointer is the configuration's (see the module comment).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: FilterEnvoyPtr,
) -> *const c_void {
    config
}

/// The request headers: one decision, applied. A panic refuses the request (500).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let next = guarded(
        || {
            // The reply itself is guarded too: whatever happens, the chain stops.
            let _ = catch_unwind(|| {
                log::error!("request refused (500): the filter failed while deciding");
                http::refuse(&mut Envoy(filter_envoy), http::PANICKED)
            });
            Next::Stop
        },
        || {
            let mut host = Envoy(filter_envoy);
            // SAFETY: the configuration's box (see filter_new), alive while the stream is.
            match unsafe { (filter as *const HttpConfig).as_ref() } {
                Some(config) => config.with(|compiled| http::request_headers(&mut host, compiled)),
                None => http::refuse(&mut host, http::NOT_CONFIGURED),
            }
        },
    );
    match next {
        Next::Continue => abi::HEADERS_CONTINUE,
        Next::Stop => abi::HEADERS_STOP_ITERATION,
    }
}

/// Hooks with nothing to do: the request goes on.
macro_rules! pass {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:expr;)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) -> u32 {
            $(let _ = $arg;)*
            $ret
        }
    )*};
}

pass! {
    envoy_dynamic_module_on_http_filter_request_body(f: FilterEnvoyPtr, m: *const c_void, e: bool) -> abi::BODY_CONTINUE;
    envoy_dynamic_module_on_http_filter_request_trailers(f: FilterEnvoyPtr, m: *const c_void) -> abi::TRAILERS_CONTINUE;
    envoy_dynamic_module_on_http_filter_response_headers(f: FilterEnvoyPtr, m: *const c_void, e: bool) -> abi::HEADERS_CONTINUE;
    envoy_dynamic_module_on_http_filter_response_body(f: FilterEnvoyPtr, m: *const c_void, e: bool) -> abi::BODY_CONTINUE;
    envoy_dynamic_module_on_http_filter_response_trailers(f: FilterEnvoyPtr, m: *const c_void) -> abi::TRAILERS_CONTINUE;
}

/// Hooks with no result and nothing to do.
macro_rules! ignore {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[no_mangle]
        pub extern "C" fn $name($($arg: $ty),*) {
            $(let _ = $arg;)*
        }
    )*};
}

ignore! {
    envoy_dynamic_module_on_http_filter_stream_complete(f: FilterEnvoyPtr, m: *const c_void);
    envoy_dynamic_module_on_http_filter_destroy(m: *const c_void);
    envoy_dynamic_module_on_http_filter_http_callout_done(f: FilterEnvoyPtr, m: *const c_void, id: u64, r: u32, h: *mut c_void, hs: usize, b: *mut c_void, bs: usize);
    envoy_dynamic_module_on_http_filter_http_stream_headers(f: FilterEnvoyPtr, m: *const c_void, id: u64, h: *mut c_void, hs: usize, e: bool);
    envoy_dynamic_module_on_http_filter_http_stream_data(f: FilterEnvoyPtr, m: *const c_void, id: u64, d: *const c_void, ds: usize, e: bool);
    envoy_dynamic_module_on_http_filter_http_stream_trailers(f: FilterEnvoyPtr, m: *const c_void, id: u64, t: *mut c_void, ts: usize);
    envoy_dynamic_module_on_http_filter_http_stream_complete(f: FilterEnvoyPtr, m: *const c_void, id: u64);
    envoy_dynamic_module_on_http_filter_http_stream_reset(f: FilterEnvoyPtr, m: *const c_void, id: u64, r: u32);
    envoy_dynamic_module_on_http_filter_scheduled(f: FilterEnvoyPtr, m: *const c_void, id: u64);
    envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(f: FilterEnvoyPtr, m: *const c_void);
    envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(f: FilterEnvoyPtr, m: *const c_void);
}
