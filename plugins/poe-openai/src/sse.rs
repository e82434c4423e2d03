//! Reads a streamed chat completion: server-sent events whose `data` is one
//! `chat.completion.chunk` JSON each, ending with `data: [DONE]`
//! (OpenAI's format, which Poe follows; usage arrives in a last chunk with
//! empty `choices` when `stream_options.include_usage` is set).
//!
//! Parsing the SSE framing is left to `eventsource-stream`; this module only
//! interprets the data lines and refuses anything that is not the protocol.

use eventsource_stream::{EventStreamError, Eventsource};
use futures::StreamExt;
use poe_plugin_api::{ErrorKind, PluginError, Sink};
use serde_json::Value;

use crate::errors;
use crate::wire::{Assembled, Completion};

/// How much of a bad data line to quote in the error.
const SNIPPET: usize = 80;
/// Most events folded in before their text is emitted.
const BATCH: usize = 512;

/// Folds one SSE event into `answer`; `Ok(true)` at `[DONE]`.
fn fold(
    item: Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>,
    status: u16,
    sink: &Sink,
    emit: bool,
    answer: &mut Assembled,
) -> Result<bool, PluginError> {
    let event = item.map_err(|e| match e {
        EventStreamError::Transport(err) => errors::transport(err),
        other => errors::malformed(status, "SSE", other),
    })?;
    let data = event.data.trim();
    if data.is_empty() {
        return Ok(false);
    }
    if data == "[DONE]" {
        return Ok(true);
    }
    let bad_line = |e: serde_json::Error| {
        errors::malformed(
            status,
            "SSE",
            format!("{e} in data line {:?}", errors::truncate(data, SNIPPET)),
        )
    };
    // Straight into the chunk type (no `Value` in between: an answer is
    // hundreds of chunks); anything else is read again as a whole.
    let chunk = match serde_json::from_str::<Completion>(data) {
        Ok(chunk) if event.event != "error" && chunk.error.as_ref().is_none_or(Value::is_null) => {
            chunk
        }
        _ => {
            let json: Value = serde_json::from_str(data).map_err(bad_line)?;
            // Failures after the 200 arrive as an error object in the stream.
            if event.event == "error" || json.get("error").is_some_and(|e| !e.is_null()) {
                return Err(errors::from_stream_error(status, &json));
            }
            // JSON, but not a chunk: the parse error says why.
            return Err(match serde_json::from_value::<Completion>(json) {
                Err(e) => bad_line(e),
                Ok(_) => errors::malformed(status, "SSE", "an unreadable chunk"),
            });
        }
    };
    answer.apply_chunk(chunk, sink, emit);
    Ok(false)
}

/// Consumes the SSE body of `response` (HTTP `status`), emitting deltas to
/// `sink` when `emit` is set, and returns the assembled answer.
pub(crate) async fn read(
    response: reqwest::Response,
    status: u16,
    sink: &Sink,
    emit: bool,
) -> Result<Assembled, PluginError> {
    // Events that arrived together are folded in together and their text
    // emitted once (see `Assembled::flush`).
    let mut batches = response
        .bytes_stream()
        // Linear parsing however large the reads (see `chunks`).
        .flat_map(|read| futures::stream::iter(poe_plugin_api::chunks::by_line(read)))
        .eventsource()
        .ready_chunks(BATCH);
    let mut answer = Assembled::default();
    while let Some(batch) = batches.next().await {
        for item in batch {
            let done = fold(item, status, sink, emit, &mut answer);
            if !matches!(done, Ok(false)) {
                answer.flush(sink);
            }
            match done {
                Ok(true) => return Ok(answer),
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        answer.flush(sink);
    }
    // The connection ended without `[DONE]`. If the model had already said it
    // was finished, the answer is complete; otherwise it was cut short.
    if answer.finished() {
        Ok(answer)
    } else {
        Err(PluginError::new(
            ErrorKind::Upstream,
            "Poe closed the stream before the answer was complete",
        )
        .with_status(status))
    }
}
