//! Provider plugins: finding and loading them ([`loader`]) and choosing the
//! one that serves a model ([`registry`]).

pub mod loader;
pub mod registry;
pub mod watcher;

pub use registry::{LoadedPlugin, Registry, RouteError};
