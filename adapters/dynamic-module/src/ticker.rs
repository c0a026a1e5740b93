//! The sources' own timer (docs/sources.md, "In the native build"): a thread of the module that
//! only sleeps and asks Envoy's scheduler for the configuration's next tick, which Envoy then runs
//! on its main thread (`on_http_filter_config_scheduled`). It touches nothing but the scheduler.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use log::warn;

use crate::abi::callout as abi;

/// The module's own timer: sleeps, then asks Envoy's scheduler for a tick on the main thread.
pub struct Ticker {
    shared: Arc<(Mutex<bool>, Condvar)>,
    period_ms: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
    scheduler: SchedulerHandle,
}

/// A scheduler pointer, committed from the ticker thread (Envoy's scheduler is made for that).
#[derive(Clone, Copy)]
struct SchedulerHandle(abi::SchedulerPtr);
// SAFETY: Envoy's config scheduler may be committed from any thread; it is deleted only after
// the ticker thread has been joined (Ticker::drop).
unsafe impl Send for SchedulerHandle {}

impl Ticker {
    /// Starts ticking every `period_ms` for the configuration `config` (main thread).
    pub(crate) fn start(config: abi::ConfigEnvoyPtr, period_ms: u32) -> Option<Ticker> {
        // SAFETY: main thread, in config_new.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(config) };
        if scheduler.is_null() {
            warn!("sources: Envoy gave no scheduler; the lists will not be fetched");
            return None;
        }
        let scheduler = SchedulerHandle(scheduler);
        let shared = Arc::new((Mutex::new(false), Condvar::new()));
        let period = Arc::new(AtomicU32::new(period_ms));
        let (s, p) = (Arc::clone(&shared), Arc::clone(&period));
        let thread = std::thread::Builder::new()
            .name("client-ip-ticks".into())
            .spawn(move || {
                let handle = scheduler;
                let (stop, wake) = &*s;
                let Ok(mut stopped) = stop.lock() else { return };
                loop {
                    let wait = Duration::from_millis(u64::from(p.load(Ordering::Relaxed)));
                    stopped = match wake.wait_timeout(stopped, wait) {
                        Ok((g, _)) => g,
                        Err(_) => return,
                    };
                    if *stopped {
                        return;
                    }
                    // SAFETY: the scheduler lives until this thread is joined.
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            handle.0, 0,
                        )
                    };
                }
            });
        match thread {
            Ok(thread) => Some(Ticker {
                shared,
                period_ms: period,
                thread: Some(thread),
                scheduler,
            }),
            Err(e) => {
                warn!("sources: cannot start the tick thread ({e}); the lists will not be fetched");
                // SAFETY: made above, never committed.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        scheduler.0,
                    )
                };
                None
            }
        }
    }
}

impl Ticker {
    /// Changes the period from the next tick on.
    pub fn set_period(&self, ms: u32) {
        self.period_ms.store(ms, Ordering::Relaxed);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        let (stop, wake) = &*self.shared;
        if let Ok(mut stopped) = stop.lock() {
            *stopped = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // SAFETY: the thread that committed it is gone; main thread (config_destroy).
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.scheduler.0)
        };
    }
}
