//! Conversations of the `chat` tool: their messages in the store, which
//! turn is running in each, and retention.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// Every conversation of the daemon.
pub struct Conversations {
    store: Option<Arc<Store>>,
    retention: Duration,
}

impl Conversations {
    /// Conversations kept in `store` (in memory only without one).
    pub fn new(store: Option<Arc<Store>>, retention: Duration) -> Self {
        Self { store, retention }
    }
}
