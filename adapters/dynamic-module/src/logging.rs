//! `log` records to Envoy's log (component `dynamic_modules`), following Envoy's level.

use log::{LevelFilter, Log, Metadata, Record};

use crate::abi;

struct EnvoyLogger;

static LOGGER: EnvoyLogger = EnvoyLogger;

impl Log for EnvoyLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        let line = record.args().to_string();
        // SAFETY: the buffer is valid for the call; Envoy copies it.
        unsafe {
            abi::envoy_dynamic_module_callback_log(
                level,
                abi::ModuleBuffer {
                    ptr: line.as_ptr().cast(),
                    length: line.len(),
                },
            )
        }
    }

    fn flush(&self) {}
}

/// Installs the logger (once) and follows Envoy's level, so that `debug!` costs nothing while
/// Envoy logs at info.
pub fn refresh() {
    let _ = log::set_logger(&LOGGER);
    let levels = [
        (0, LevelFilter::Trace),
        (1, LevelFilter::Debug),
        (2, LevelFilter::Info),
        (3, LevelFilter::Warn),
        (4, LevelFilter::Error),
    ];
    // SAFETY: a plain query.
    let filter = levels
        .iter()
        .find(|(l, _)| unsafe { abi::envoy_dynamic_module_callback_log_enabled(*l) })
        .map_or(LevelFilter::Off, |(_, f)| *f);
    log::set_max_level(filter);
}
