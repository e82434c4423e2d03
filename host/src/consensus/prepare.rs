//! A `consensus` call checked and turned into one request per model before
//! anything is sent: the models resolved (aliases, `auto`) and routed
//! (unknown ones named), duplicates dropped with a note, the cap, sampling
//! ranges, files and images read under `chat`'s rules, the conversation
//! claimed, and each model's history from the earlier rounds.

use std::sync::Arc;

use poe_plugin_api::{Message, Options, Role};
use rmcp::model::CallToolResult;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::chat::args::{Refusal, Sampling};
use crate::chat::conversation::{TurnSlot, to_message};
use crate::chat::files::{InputRules, read_files, read_images};
use crate::chat::turn::{owner_of, refuse_attachments, user_row};
use crate::daemon::state::{DaemonState, SessionInfo};
use crate::mcp::errors::{Code, tool_error};
use crate::plugins::LoadedPlugin;
use crate::store::{ConversationRow, MessageRow};

/// A model as `models` names it: a name, or `{"model": name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ModelSpec {
    Name(String),
    Object { model: String },
}

impl ModelSpec {
    fn name(&self) -> &str {
        match self {
            Self::Name(n) | Self::Object { model: n } => n.trim(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Arguments of `consensus`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusArgs {
    pub prompt: String,
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub images: Vec<String>,
    pub continuation_id: Option<String>,
    #[serde(default = "yes")]
    pub enable_cross_feedback: bool,
    pub cross_feedback_prompt: Option<String>,
    pub temperature: Option<f64>,
    pub reasoning_effort: Option<String>,
    #[serde(default, rename = "async")]
    pub run_async: bool,
    #[serde(default)]
    pub export: bool,
}

/// One model of the consensus, ready to be asked.
pub struct Seat {
    /// The model as resolved (the name shown to the caller).
    pub model: String,
    /// The name the plugin receives.
    pub routed: String,
    pub plugin: Arc<LoadedPlugin>,
    /// Earlier rounds as this model sees them.
    pub history: Vec<Message>,
}

impl Seat {
    /// The plugin id.
    pub fn provider(&self) -> &str {
        &self.plugin.manifest.id
    }
}

/// A checked consensus, ready to run.
pub struct Plan {
    pub seats: Vec<Seat>,
    /// This round's user message (prompt, files, images).
    pub user: MessageRow,
    pub options: Options,
    pub enable_cross_feedback: bool,
    pub feedback_prompt: Option<String>,
    pub conversation: ConversationRow,
    /// Messages stored before this round.
    pub history_len: usize,
    /// This round's number.
    pub number: u64,
    /// Frees the conversation when dropped.
    pub slot: TurnSlot,
    pub api_key: Option<String>,
    pub cwd: Option<String>,
    pub run_async: bool,
    /// Write the conversation to files after the round (see `chat::export`).
    pub export: bool,
    /// What was adjusted (duplicates dropped), for the result.
    pub notes: Vec<String>,
    /// The settings as the result reports them.
    pub settings: Value,
}

fn refused(r: Refusal) -> CallToolResult {
    tool_error(r.code, r.message)
}

/// What model `model` saw of the stored rounds: every user message, and
/// per round its own answer, or the first answer when it was not asked.
fn history_for(model: &str, rows: &[MessageRow]) -> Vec<Message> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < rows.len() {
        let turn = rows[i].turn;
        let round: Vec<&MessageRow> = rows[i..].iter().take_while(|r| r.turn == turn).collect();
        i += round.len();
        let answers: Vec<&&MessageRow> = round.iter().filter(|r| r.role == "assistant").collect();
        let own = answers
            .iter()
            .find(|r| {
                r.model
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(model))
            })
            .or(answers.first());
        for row in round.iter().filter(|r| r.role != "assistant") {
            out.push(to_message(row));
        }
        if let Some(answer) = own {
            out.push(to_message(answer));
        }
    }
    out
}

/// Checks a `consensus` call and builds its plan. Blocking: reads the
/// store and the attached files.
pub fn prepare(
    daemon: &DaemonState,
    session: &SessionInfo,
    args: ConsensusArgs,
) -> Result<Plan, CallToolResult> {
    let mut options = Options::default();
    let sampling = Sampling {
        temperature: args.temperature,
        reasoning_effort: args.reasoning_effort.clone(),
        ..Sampling::default()
    };
    sampling.apply(&mut options).map_err(refused)?;
    if args.prompt.trim().is_empty() {
        return Err(tool_error(
            Code::InvalidArgument,
            "prompt must not be empty",
        ));
    }
    if args.models.is_empty() {
        return Err(tool_error(
            Code::InvalidArgument,
            "models must name at least one model, e.g. [\"sonnet\", \"gpt\", \"gemini\"] (see list_models)",
        ));
    }
    if args
        .cross_feedback_prompt
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(tool_error(
            Code::InvalidArgument,
            "cross_feedback_prompt must not be empty (leave it out for the default)",
        ));
    }

    // Models: resolved, routed, deduplicated, capped; unknown ones named.
    let registry = &daemon.registry;
    let route_of = |name: &str| registry.plugin_of(name);
    let needs_vision = !args.images.is_empty();
    let mut seats: Vec<Seat> = Vec::new();
    let mut notes = Vec::new();
    let mut unknown = Vec::new();
    for spec in &args.models {
        let written = spec.name();
        if written.is_empty() {
            return Err(tool_error(
                Code::InvalidArgument,
                "models must not contain an empty name",
            ));
        }
        let resolved = match daemon
            .models
            .resolve(Some(written), needs_vision, &route_of)
        {
            Ok(r) => r,
            Err(e) => {
                unknown.push(format!("{written} ({e})"));
                continue;
            }
        };
        if seats
            .iter()
            .any(|s| s.model.eq_ignore_ascii_case(&resolved.model))
        {
            notes.push(format!(
                "{written} was named twice (as {}); asked once",
                resolved.model
            ));
            continue;
        }
        match registry.route(&resolved.model) {
            Ok(route) => seats.push(Seat {
                model: resolved.model,
                routed: route.model,
                plugin: route.plugin,
                history: Vec::new(),
            }),
            Err(e) => unknown.push(format!("{written}: {e}")),
        }
    }
    if !unknown.is_empty() {
        return Err(tool_error(
            Code::ModelNotFound,
            format!("unknown models, nothing was sent: {}", unknown.join("; ")),
        ));
    }
    let max = daemon.settings.consensus_max_models;
    if seats.len() > max {
        return Err(tool_error(
            Code::InvalidArgument,
            format!(
                "a consensus asks at most {max} models (config.toml [consensus] max_models); {} were named",
                seats.len()
            ),
        ));
    }

    // Files and images, read before anything is sent.
    let rules = InputRules::for_session(&daemon.settings.chat, session.cwd.as_deref());
    let files = read_files(&args.files, &rules).map_err(|e| tool_error(e.code, e.message))?;
    let images = read_images(&args.images, &rules).map_err(|e| tool_error(e.code, e.message))?;

    // The conversation: continued (claimed, so no other turn runs in it) or new.
    let owner = owner_of(session);
    let conversations = &daemon.conversations;
    let (conversation, slot, rows) = match &args.continuation_id {
        Some(id) => {
            let (row, rows, slot) = conversations.continue_turn(id, &owner).map_err(refused)?;
            (row, slot, rows)
        }
        None => {
            let (row, slot) = conversations.start(&owner).map_err(refused)?;
            (row, slot, Vec::new())
        }
    };
    let number = conversation.turns + 1;
    let user = user_row(&args.prompt, files, images, number);
    let user_message = to_message(&user);
    for seat in &mut seats {
        seat.history = history_for(&seat.model, &rows);
        let mut all = seat.history.clone();
        all.push(user_message.clone());
        refuse_attachments(&seat.plugin, &seat.model, &all)?;
    }
    if seats.iter().any(|s| s.provider() == "poe-openai") {
        daemon.models.catalog.refresh_in_background();
    }
    let settings = json!({
        "models": seats.iter().map(|s| s.model.clone()).collect::<Vec<_>>(),
        "enable_cross_feedback": args.enable_cross_feedback,
        "cross_feedback_prompt": args.cross_feedback_prompt,
        "temperature": args.temperature,
        "reasoning_effort": args.reasoning_effort,
    });
    Ok(Plan {
        seats,
        user,
        options,
        enable_cross_feedback: args.enable_cross_feedback,
        feedback_prompt: args.cross_feedback_prompt,
        conversation,
        history_len: rows.len(),
        number,
        slot,
        api_key: session.api_key.clone(),
        cwd: session.cwd.clone(),
        run_async: args.run_async,
        export: args.export,
        notes,
        settings,
    })
}

/// The user message of phase 2 for a model: the others' answers, then the
/// instruction.
pub fn feedback_message(others: &[(&str, &str)], instruction: &str) -> Message {
    let mut text = String::from("Other models answered the same request.\n");
    for (model, answer) in others {
        text.push_str(&format!("\n--- {model} ---\n{answer}\n"));
    }
    text.push_str(&format!(
        "\n--- end of the other answers ---\n\n{instruction}"
    ));
    Message {
        role: Role::User,
        content: text,
        attachments: Vec::new(),
        tool_call_id: None,
        tool_calls: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, turn: u64, model: Option<&str>, content: &str) -> MessageRow {
        MessageRow {
            role: role.into(),
            content: content.into(),
            model: model.map(str::to_string),
            provider: None,
            turn,
            attachments: None,
            tool_calls: None,
            tool_call_id: None,
            meta: None,
            created_ms: 0,
        }
    }

    #[test]
    fn each_model_sees_its_own_answers_or_the_first() {
        let rows = [
            msg("user", 1, None, "q1"),
            msg("assistant", 1, Some("A"), "a1"),
            msg("assistant", 1, Some("B"), "b1"),
            msg("user", 2, Some("A"), "q2"),
            msg("assistant", 2, Some("A"), "a2"),
        ];
        let texts = |m: &str| -> Vec<String> {
            history_for(m, &rows)
                .into_iter()
                .map(|m| m.content)
                .collect()
        };
        assert_eq!(texts("B"), ["q1", "b1", "q2", "a2"]);
        assert_eq!(texts("a"), ["q1", "a1", "q2", "a2"]);
        assert_eq!(texts("C"), ["q1", "a1", "q2", "a2"]);
    }

    #[test]
    fn models_are_names_or_objects() {
        let args: ConsensusArgs = serde_json::from_value(json!({
            "prompt": "p", "models": ["a", {"model": "b"}]
        }))
        .unwrap();
        let names: Vec<&str> = args.models.iter().map(ModelSpec::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(args.enable_cross_feedback);
    }
}
