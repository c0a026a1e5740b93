//! A proxy-wasm HTTP filter that does nothing: every request goes on untouched. Case (B) of
//! `make bench`, the fixed price of any wasm filter (the V8 boundary, the stream context).
//!
//! With the configuration `host-calls` it makes, per request, exactly the host calls that
//! client-ip-filter makes in its default configuration (case C), and nothing else: `get_map` of the
//! request headers, `get_property` of the connection filter state `client_ip.downstream_address`,
//! `increment_metric`, `set_property` twice and `set_map_value` once. Case (B-calls): the price of
//! those calls alone, to tell it from the filter's own work inside the VM.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    /// The counter of `host-calls`; None: do nothing.
    host_calls: Option<u32>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match config.trim_ascii() {
            b"" => self.host_calls = None,
            b"host-calls" => match hostcalls::define_metric(MetricType::Counter, "noop.requests") {
                Ok(id) => self.host_calls = Some(id),
                Err(_) => return false,
            },
            _ => return false,
        }
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            host_calls: self.host_calls,
        }))
    }
}

struct Stream {
    host_calls: Option<u32>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(counter) = self.host_calls {
            let _ = hostcalls::get_map_bytes(MapType::HttpRequestHeaders);
            let _ = hostcalls::get_property(vec!["filter_state", "client_ip.downstream_address"]);
            let _ = hostcalls::increment_metric(counter, 1);
            let _ = hostcalls::set_property(vec!["noop_client"], Some(b"127.0.0.1"));
            let _ = hostcalls::set_property(vec!["noop_decision"], Some(b"allow"));
            let _ = hostcalls::set_map_value(
                MapType::HttpRequestHeaders,
                "x-real-ip",
                Some("127.0.0.1"),
            );
        }
        Action::Continue
    }
}
