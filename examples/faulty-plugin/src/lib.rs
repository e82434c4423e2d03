//! A plugin that misbehaves on purpose. The end-to-end tests load it to show
//! that the daemon contains a plugin's failures:
//!
//! - model `faulty-panic`: `invoke` panics;
//! - model `faulty-slow`: streams a tick every 50 ms for up to 60 s, stopping
//!   as soon as the host cancels (used to test cancellation);
//! - model `faulty-sleep-<ms>`: answers `slept <ms> ms` after that long
//!   (cancellable), and counts its invocations in `$FAULTY_COUNT_FILE`;
//! - model `faulty-stream-<ms>`: streams `tick N` every 50 ms for that long,
//!   then answers with all it streamed (progress coalescing tests);
//! - model `faulty-stubborn-<ms>`: like `faulty-sleep-<ms>` but ignores
//!   cancellation, as a call stuck in a blocking upstream read does;
//! - `FAULTY_PANIC_IN=manifest|open` in the daemon's environment: panics there.

use std::time::{Duration, Instant};

use poe_plugin_api::{
    Capability, Config, Event, Manifest, PluginError, Provider, Request, Response, Sink,
    export_provider,
};

/// The misbehaving provider.
pub struct Faulty;

fn panic_in(stage: &str) -> bool {
    std::env::var("FAULTY_PANIC_IN").is_ok_and(|v| v == stage)
}

impl Provider for Faulty {
    fn manifest() -> Manifest {
        if panic_in("manifest") {
            panic!("faulty plugin: panic in manifest, as asked");
        }
        Manifest {
            id: "faulty".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Misbehaves on purpose (test plugin)".into(),
            models: vec!["faulty-*".into()],
            capabilities: vec![Capability::Text],
            default_rate_limit: None,
            config_keys: vec![],
            plugin_api_version: String::new(),
            options: vec![],
            attachments: vec![],
        }
    }

    fn open(_config: Config) -> Result<Self, PluginError> {
        if panic_in("open") {
            panic!("faulty plugin: panic in open, as asked");
        }
        Ok(Faulty)
    }

    fn invoke(&self, request: Request, sink: &Sink) -> Result<Response, PluginError> {
        match request.model.as_str() {
            "faulty-panic" => panic!("faulty plugin: panic in invoke, as asked"),
            "faulty-slow" => {
                let started = Instant::now();
                let mut ticks = 0u32;
                while started.elapsed() < Duration::from_secs(60) {
                    if sink.is_cancelled() {
                        return Err(PluginError::cancelled());
                    }
                    ticks += 1;
                    sink.emit(&Event::TextDelta {
                        text: format!("tick {ticks}\n"),
                    });
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Response {
                    text: format!("{ticks} ticks"),
                    ..Response::default()
                })
            }
            other if other.starts_with("faulty-stream-") => {
                // Streams `tick N` every 50 ms for the given milliseconds,
                // then answers with everything it streamed.
                let ms: u64 = other["faulty-stream-".len()..].parse().unwrap_or(1000);
                let until = Instant::now() + Duration::from_millis(ms);
                let mut text = String::new();
                let mut ticks = 0u32;
                while Instant::now() < until {
                    if sink.is_cancelled() {
                        return Err(PluginError::cancelled());
                    }
                    ticks += 1;
                    let piece = format!("tick {ticks}\n");
                    sink.emit(&Event::TextDelta {
                        text: piece.clone(),
                    });
                    text.push_str(&piece);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Response {
                    text,
                    ..Response::default()
                })
            }
            other if other.starts_with("faulty-sleep-") => {
                let ms: u64 = other["faulty-sleep-".len()..].parse().unwrap_or(1000);
                if let Ok(path) = std::env::var("FAULTY_COUNT_FILE") {
                    use std::io::Write;
                    if let Ok(mut file) = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                    {
                        let _ = writeln!(file, "{other}");
                    }
                }
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until {
                    if sink.is_cancelled() {
                        return Err(PluginError::cancelled());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(Response {
                    text: format!("slept {ms} ms"),
                    ..Response::default()
                })
            }
            other if other.starts_with("faulty-stubborn-") => {
                let ms: u64 = other["faulty-stubborn-".len()..].parse().unwrap_or(1000);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Response {
                    text: format!("slept {ms} ms, ignoring cancellation"),
                    ..Response::default()
                })
            }
            other => Err(PluginError::new(
                poe_plugin_api::ErrorKind::ModelNotFound,
                format!("faulty plugin has no model {other}"),
            )),
        }
    }
}

export_provider!(Faulty);
