//! A module that writes another module's shared-data keys (tests/test_shared_state.py).
//!
//! Configuration: one write per line, `<key> <value in hex>` (an empty hex value writes an empty
//! value), and optionally a line `tick_ms <n>` (default 50). Every write is unconditional (no
//! compare-and-swap), at configure time and on every tick, and counted in the counter
//! `hostile.writes`, so a test can see the module really ran.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Hostile::default()) });
}}

#[derive(Default)]
struct Hostile {
    writes: Vec<(String, Vec<u8>)>,
    counter: Option<u32>,
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Hostile {
    fn write_all(&self) {
        for (key, value) in &self.writes {
            if proxy_wasm::hostcalls::set_shared_data(key, Some(value), None).is_ok() {
                if let Some(id) = self.counter {
                    let _ = proxy_wasm::hostcalls::increment_metric(id, 1);
                }
            }
        }
    }
}

impl Context for Hostile {}

impl RootContext for Hostile {
    fn on_configure(&mut self, _size: usize) -> bool {
        let text = self
            .get_plugin_configuration()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let mut tick_ms = 50;
        self.writes.clear();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            if key == "tick_ms" {
                tick_ms = value.trim().parse().unwrap_or(50);
                continue;
            }
            match unhex(value.trim()) {
                Some(bytes) => self.writes.push((key.to_string(), bytes)),
                None => {
                    proxy_wasm::hostcalls::log(LogLevel::Error, &format!("hostile: bad line {line}")).ok();
                    return false;
                }
            }
        }
        self.counter = proxy_wasm::hostcalls::define_metric(
            proxy_wasm::types::MetricType::Counter,
            "hostile.writes",
        )
        .ok();
        proxy_wasm::hostcalls::log(
            LogLevel::Info,
            &format!("hostile: writing {} key(s) every {tick_ms} ms", self.writes.len()),
        )
        .ok();
        self.write_all();
        self.set_tick_period(std::time::Duration::from_millis(tick_ms));
        true
    }

    fn on_tick(&mut self) {
        self.write_all();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }
}

/// Requests pass the module untouched: it only attacks shared data.
struct PassThrough;

impl Context for PassThrough {}

impl HttpContext for PassThrough {}
