//! The plugin as the host sees it: the cdylib, built by the testkit (`cargo
//! test` leaves it where no host looks), is copied to a private path,
//! loaded through plugin-api's host loader, and
//! invoked across the ABI with the fake `codex` of tests/fixtures. Proves
//! `export_provider!`, the manifest and the JSON round trip of requests,
//! events (the thread id as a continuation) and errors.

mod common;

use common::*;
use poe_plugin_api::{Config, ErrorKind, Event, PLUGIN_API_VERSION};

#[test]
fn loads_and_runs_codex_across_the_abi() {
    let library = testkit::build::load_plugin("codex-cli");
    let manifest = library.manifest();
    assert_eq!(manifest.id, "codex-cli");
    assert_eq!(
        manifest.models,
        vec!["codex".to_string(), "codex:*".to_string()]
    );
    assert_eq!(manifest.plugin_api_version, PLUGIN_API_VERSION);

    let mut config = Config::new();
    config.insert("CODEX_BIN".into(), fake_codex().display().to_string());
    let provider = library.open(&config).expect("opens");
    let work = tempfile::tempdir().unwrap();

    let recorder = Recorder::default();
    let response = provider
        .invoke(
            &request("codex", "across the boundary", work.path()),
            recorder.clone(),
        )
        .unwrap();
    assert_eq!(response.text, "Codex heard: across the boundary");
    let thread = response.continuation.expect("thread id");
    assert!(
        recorder
            .events()
            .contains(&Event::Continuation { id: thread })
    );

    let error = provider
        .invoke(
            &request("codex", "NOLOGIN", work.path()),
            Recorder::default(),
        )
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);
}
