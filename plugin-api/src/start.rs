//! Calls that hold no host thread (0.1.4), carried in-band on the ABI that
//! 0.1.2 fixed.
//!
//! abi_stable refuses a library whose vtables have fewer entries than the
//! loader's, so the host cannot add a function to `ProviderAbi` or `SinkAbi`
//! without refusing every plugin built before. The non-blocking call rides on
//! `invoke` and `emit` instead:
//!
//! - the host sends a plugin that reports plugin-api 0.1.4 or later the
//!   request JSON with `"__start":true` as its first key;
//! - an [`crate::AsyncProvider`] (through its `Driver`) starts the call on
//!   its own runtime and returns [`STARTED`] at once, then ends the call by
//!   emitting exactly one `{"__finish":{"ok":<Response>}}` or
//!   `{"__finish":{"err":<PluginError>}}` through the sink;
//! - a blocking [`crate::Provider`] returns [`BLOCKING`] at once without
//!   running anything; the host then sends the plain request from a thread
//!   of its blocking pool, as it does for older plugins.

use abi_stable::std_types::{RErr, ROk, RResult, RString};
use serde::Deserialize;
use serde_json::value::RawValue;

/// How a start request begins; the host writes it, the SDK only compares.
pub(crate) const START_PREFIX: &str = r#"{"__start":true,"#;
/// `invoke`'s answer when the call started and will finish through the sink.
pub(crate) const STARTED: &str = r#"{"__started":true}"#;
/// `invoke`'s answer from a provider that can only block.
pub(crate) const BLOCKING: &str = r#"{"__blocking":true}"#;
const FINISH_PREFIX: &str = r#"{"__finish":"#;

/// The start form of a serialized `Request` (a JSON object with fields).
pub(crate) fn flagged(request: &str) -> String {
    debug_assert!(request.starts_with('{') && request.len() > 2);
    format!("{START_PREFIX}{}", &request[1..])
}

/// Whether `request` asks for a started call.
pub(crate) fn is_start(request: &str) -> bool {
    request.starts_with(START_PREFIX)
}

/// The event that ends a started call.
pub(crate) fn finish_event(outcome: &RResult<RString, RString>) -> String {
    match outcome {
        ROk(json) => format!(r#"{FINISH_PREFIX}{{"ok":{json}}}}}"#),
        RErr(json) => format!(r#"{FINISH_PREFIX}{{"err":{json}}}}}"#),
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, rename = "__finish")]
    finish: Outcome<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Outcome<'a> {
    Ok(#[serde(borrow)] &'a RawValue),
    Err(#[serde(borrow)] &'a RawValue),
}

/// The outcome an emitted event carries, when it is the finish event.
pub(crate) fn parse_finish(event: &str) -> Option<RResult<RString, RString>> {
    if !event.starts_with(FINISH_PREFIX) {
        return None;
    }
    Some(match serde_json::from_str::<Envelope>(event) {
        Ok(Envelope {
            finish: Outcome::Ok(json),
        }) => ROk(RString::from(json.get())),
        Ok(Envelope {
            finish: Outcome::Err(json),
        }) => RErr(RString::from(json.get())),
        Err(e) => RErr(RString::from(
            serde_json::json!({
                "kind": "internal",
                "message": format!("plugin ended the call with an unreadable answer: {e}"),
            })
            .to_string(),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finish_event_round_trips_both_outcomes() {
        for outcome in [
            ROk(RString::from(r#"{"text":"hi"}"#)),
            RErr(RString::from(r#"{"kind":"timeout","message":"late"}"#)),
        ] {
            let event = finish_event(&outcome);
            assert_eq!(parse_finish(&event), Some(outcome));
        }
        assert_eq!(parse_finish(r#"{"type":"text_delta","text":"x"}"#), None);
        let garbage = parse_finish(r#"{"__finish":{"maybe":1}}"#).unwrap();
        assert!(matches!(garbage, RErr(e) if e.contains("unreadable answer")));
    }

    #[test]
    fn the_start_flag_is_the_first_key_of_an_ordinary_request() {
        let request = r#"{"model":"m","messages":[]}"#;
        let start = flagged(request);
        assert!(is_start(&start) && !is_start(request));
        let parsed: serde_json::Value = serde_json::from_str(&start).unwrap();
        assert_eq!(parsed["__start"], true);
        assert_eq!(parsed["model"], "m");
    }
}
