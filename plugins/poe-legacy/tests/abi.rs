//! The plugin as the host sees it: the cdylib, built by the testkit (`cargo
//! test` leaves it where no host looks), is copied to a private path,
//! loaded through plugin-api's host loader, and
//! invoked across the ABI against a fake bot server. Proves
//! `export_provider!`, the manifest and the JSON round trip of requests,
//! events and errors.

mod common;

use common::*;
use poe_plugin_api::{Config, ErrorKind, PLUGIN_API_VERSION};
use wiremock::Mock;
use wiremock::matchers::{method, path};

#[test]
fn loads_and_answers_across_the_abi() {
    let library = testkit::build::load_plugin("poe-legacy");
    let manifest = library.manifest();
    assert_eq!(manifest.id, "poe-legacy");
    assert_eq!(manifest.models[0], "legacy:*");
    assert_eq!(manifest.plugin_api_version, PLUGIN_API_VERSION);

    let (rt, server) = server();
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/bot/Claude-3-Opus"))
            .respond_with(stream(&[text("across "), text("the boundary"), done()]))
            .mount(&server),
    );
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/bot/Refuser"))
            .respond_with(stream(&[
                error(false, "no", Some("user_caused_error")),
                done(),
            ]))
            .mount(&server),
    );
    let mut config = Config::new();
    config.insert(
        "POE_LEGACY_BASE_URL".into(),
        format!("{}/bot/", server.uri()),
    );
    config.insert("POE_API_KEY".into(), KEY.into());
    let provider = library.open(&config).expect("opens");

    let recorder = Recorder::default();
    let response = provider
        .invoke(&request("Claude-3-Opus", "hi"), recorder.clone())
        .unwrap();
    assert_eq!(response.text, "across the boundary");
    assert_eq!(recorder.streamed_text(), response.text);

    let error = provider
        .invoke(&request("Refuser", "hi"), Recorder::default())
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest);
}
