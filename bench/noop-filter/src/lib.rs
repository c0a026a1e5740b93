//! A proxy-wasm HTTP filter that does nothing: every request goes on untouched. Case (B) of
//! `make bench`, the fixed price of any wasm filter (the V8 boundary, the stream context).
//!
//! With the configuration `host-calls` it makes, per request, exactly the host calls that
//! client-ip-filter makes in its default configuration (case C), and nothing else: `get_property`
//! of the connection filter state `client_ip.downstream_address`, `get_map` of the request
//! headers, `set_property` of `wasm.client_ip` and `set_map_value` of `x-real-ip` (its counters
//! are counted in the VM and flushed every 250 ms). Case (B-calls): the price of those calls alone, to tell it from the
//! filter's own work inside the VM.
//!
//! With `calls:<name>,<name>,...` it makes the named host calls, in that order, per request: the
//! probes that price one kind of host call against (B). Names: `map` (`get_map_bytes` of the
//! request headers), `value` (`get_map_value` of `x-forwarded-for`), `fs` (`get_property` of the
//! filter state `client_ip.downstream_address`), `src` (`get_property` of `source.address`), `inc`
//! (`increment_metric`), `prop` (`set_property`), `set` (`set_map_value` of `x-real-ip`), `remove`
//! (removing `x-client-ip`).
//!
//! With `network` it is a network filter (`envoy.filters.network.wasm`) that does nothing: every
//! connection goes on untouched. Case (N-B), the floor of any wasm network filter.
//!
//! Its host calls go through client-ip-filter's own host-call layer
//! (`adapters/proxy-wasm/src/host.rs`, compiled into this crate as it is), not the SDK's
//! `hostcalls`, so a call costs here what it costs there; and with the feature `count-host-calls`
//! they are counted the same way.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

/// client-ip-filter's host-call layer, the same source file.
#[allow(dead_code)]
#[path = "../../../adapters/proxy-wasm/src/host.rs"]
mod host;

use host::PropertyPath;

const DOWNSTREAM_FILTER_STATE: PropertyPath =
    PropertyPath::fixed(b"filter_state\0client_ip.downstream_address");
const SOURCE_ADDRESS: PropertyPath = PropertyPath::fixed(b"source\0address");
const NOOP_CLIENT: PropertyPath = PropertyPath::fixed(b"noop_client");

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// One host call of the probe.
#[derive(Clone, Copy)]
enum Call {
    Map,
    Value,
    FilterState,
    Source,
    Increment,
    SetProperty,
    SetHeader,
    RemoveHeader,
}

impl Call {
    fn parse(name: &[u8]) -> Option<Call> {
        Some(match name {
            b"map" => Call::Map,
            b"value" => Call::Value,
            b"fs" => Call::FilterState,
            b"src" => Call::Source,
            b"inc" => Call::Increment,
            b"prop" => Call::SetProperty,
            b"set" => Call::SetHeader,
            b"remove" => Call::RemoveHeader,
            _ => return None,
        })
    }

    fn make(self, counter: u32) {
        let _ = match self {
            Call::Map => host::request_header_lines().map(drop),
            Call::Value => host::request_header("x-forwarded-for").map(drop),
            Call::FilterState => host::property(&DOWNSTREAM_FILTER_STATE).map(drop),
            Call::Source => host::property(&SOURCE_ADDRESS).map(drop),
            Call::Increment => host::increment_metric(counter, 1),
            Call::SetProperty => host::set_property(&NOOP_CLIENT, b"127.0.0.1"),
            Call::SetHeader => host::set_request_header("x-real-ip", "127.0.0.1"),
            Call::RemoveHeader => host::remove_request_header("x-client-ip"),
        };
    }
}

/// The calls of `host-calls`: what client-ip-filter makes per request in its default
/// configuration.
const HOST_CALLS: [Call; 4] = [
    Call::FilterState,
    Call::Map,
    Call::SetProperty,
    Call::SetHeader,
];

#[derive(Default)]
struct Root {
    /// The calls to make per request (none: do nothing).
    calls: Rc<Vec<Call>>,
    counter: u32,
    /// A network filter (configuration `network`).
    network: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let _background = host::count::Background::enter();
        let config = host::plugin_configuration(size).unwrap_or_default();
        let calls = match config.trim_ascii() {
            b"" => Vec::new(),
            b"network" => {
                self.network = true;
                Vec::new()
            }
            b"host-calls" => HOST_CALLS.to_vec(),
            other => match other.strip_prefix(b"calls:") {
                Some(list) => match list.split(|&b| b == b',').map(Call::parse).collect() {
                    Some(calls) => calls,
                    None => return false,
                },
                None => return false,
            },
        };
        match host::define_counter("noop.requests") {
            Ok(id) => self.counter = id,
            Err(_) => return false,
        }
        self.calls = Rc::new(calls);
        // Only a counting build ticks: to report its counts, as client-ip-filter does.
        if cfg!(feature = "count-host-calls") && host::set_tick_period(250).is_err() {
            return false;
        }
        true
    }

    fn on_tick(&mut self) {
        host::count::report();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(if self.network {
            ContextType::StreamContext
        } else {
            ContextType::HttpContext
        })
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        host::count::context();
        Some(Box::new(Connection))
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        host::count::context();
        Some(Box::new(Stream {
            calls: self.calls.clone(),
            counter: self.counter,
        }))
    }
}

struct Stream {
    calls: Rc<Vec<Call>>,
    counter: u32,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        for call in self.calls.iter() {
            call.make(self.counter);
        }
        Action::Continue
    }
}

/// A connection of the network mode: goes on untouched.
struct Connection;

impl Context for Connection {}

impl StreamContext for Connection {}
