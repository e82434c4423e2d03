//! The `consensus` tool: several models answer one prompt in parallel
//! (phase 1), then each that answered sees the others' answers and refines
//! its own (phase 2, cross-feedback).
//!
//! `prepare.rs` checks the call and builds one request per model before
//! anything is sent; `run.rs` runs the phases. Every model call is a job of
//! its own through [`crate::mcp::call::execute`], so it waits its turn at
//! the shared per-key limiter, retries only what the one retry layer
//! retries, and shows in `check_status`; the consensus itself is the
//! parent job the caller waits on. A round is stored in the `chat`
//! conversation tables, so `consensus` or `chat` can continue it.

pub mod prepare;
pub mod run;

use std::collections::HashMap;
use std::sync::Mutex;

/// The most models one consensus asks unless `[consensus] max_models` says.
pub const MAX_MODELS: usize = 8;

/// The instruction of phase 2, after the other models' answers.
pub const DEFAULT_FEEDBACK_PROMPT: &str = "Above are other models' answers to the same request. \
     Review them against yours: keep what you got right, correct what they show you got wrong or \
     missed, and say where you still disagree and why. Then give your refined, complete answer.";

/// One model call of a running consensus.
#[derive(Debug, Clone)]
pub struct Member {
    pub model: String,
    pub phase: &'static str,
    pub job_id: String,
}

/// The model calls of each running consensus, by its job id, for
/// `check_status`.
#[derive(Default)]
pub struct Runs {
    running: Mutex<HashMap<String, Vec<Member>>>,
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Member>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a model call of consensus `parent`.
    pub fn add(&self, parent: &str, member: Member) {
        self.lock()
            .entry(parent.to_string())
            .or_default()
            .push(member);
    }

    /// The model calls of consensus `parent`, if it runs.
    pub fn members(&self, parent: &str) -> Option<Vec<Member>> {
        self.lock().get(parent).cloned()
    }

    /// Forgets a consensus that ended.
    pub fn remove(&self, parent: &str) {
        self.lock().remove(parent);
    }
}
