//! The two command lines: `poe-code` ([`client`]) and `poe-coded` ([`daemon`]).

pub mod client;
mod configure;
pub mod daemon;
mod logging;
mod plugins;
mod query;
