//! The plugin as the host sees it: the cdylib, built by the testkit (`cargo
//! test` leaves it where no host looks), is copied to a private path,
//! loaded through plugin-api's host loader, and
//! invoked across the ABI against fake-poe. Proves `export_provider!`, the
//! manifest and the JSON round trip of requests, events and errors.

mod common;

use common::{Recorder, fake};
use fake_poe::FAKE_API_KEY;
use poe_plugin_api::{Config, ErrorKind, Event, Message, PLUGIN_API_VERSION, Request};

#[test]
fn loads_and_answers_across_the_abi() {
    let library = testkit::build::load_plugin("poe-openai");
    let manifest = library.manifest();
    assert_eq!(manifest.id, "poe-openai");
    assert_eq!(manifest.models, vec!["*".to_string()]);
    assert_eq!(manifest.plugin_api_version, PLUGIN_API_VERSION);
    assert_eq!(library.api_version(), PLUGIN_API_VERSION);

    let (_rt, fake) = fake();
    let mut config = Config::new();
    config.insert("POE_BASE_URL".into(), format!("{}/", fake.base_url()));
    config.insert("POE_API_KEY".into(), FAKE_API_KEY.into());
    let provider = library.open(&config).expect("opens");

    let recorder = Recorder::default();
    let request = Request {
        model: "GPT-4o".into(),
        messages: vec![Message::user("across the boundary")],
        stream: true,
        ..Request::default()
    };
    let response = provider.invoke(&request, recorder.clone()).unwrap();
    assert_eq!(response.text, "Echo from GPT-4o: across the boundary");
    assert_eq!(recorder.streamed_text(), response.text);
    assert!(
        recorder
            .events()
            .iter()
            .any(|e| matches!(e, Event::Usage(_)))
    );

    let failing = Request {
        model: "fake-429".into(),
        ..request
    };
    let error = provider.invoke(&failing, Recorder::default()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::RateLimited);
    assert_eq!(error.retry_after_ms, Some(1000));
}
