#![allow(non_local_definitions)] // emitted by #[sabi_trait]; harmless
//! The binary interface itself: an `abi_stable` root module and two trait
//! objects. Everything richer travels as JSON strings of [`crate::types`].
//!
//! Layout is checked by abi_stable when a library is loaded. The root module
//! and the trait vtables are prefix types, so a later minor version may append
//! functions after the ones marked `last_prefix_field` without breaking old
//! plugins.

use abi_stable::{
    StableAbi, declare_root_module_statics,
    library::RootModule,
    package_version_strings, sabi_trait,
    sabi_types::VersionStrings,
    std_types::{RBox, RResult, RStr, RString},
};

/// The root module every plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    /// The plugin-api version the plugin was compiled against.
    pub plugin_api_version: extern "C" fn() -> RStr<'static>,
    /// The manifest as JSON, or an error JSON (`PluginError`).
    pub manifest: extern "C" fn() -> RResult<RString, RString>,
    /// Opens a provider with the JSON config; errors are `PluginError` JSON.
    #[sabi(last_prefix_field)]
    pub open: extern "C" fn(config: RStr<'_>) -> RResult<ProviderBox, RString>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "poe_plugin";
    const NAME: &'static str = "poe_plugin";
    // abi_stable's own check uses this crate's version; the host additionally
    // applies the documented semver rule to `plugin_api_version` (see compat).
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

/// An open provider, as seen across the boundary.
#[sabi_trait]
pub trait ProviderAbi: Send + Sync {
    /// Runs one request (JSON `Request`), streaming events to `sink`; returns
    /// `Response` JSON or `PluginError` JSON.
    #[sabi(last_prefix_field)]
    fn invoke(&self, request: RStr<'_>, sink: SinkBox) -> RResult<RString, RString>;
}

/// Owned provider trait object.
pub type ProviderBox = ProviderAbi_TO<'static, RBox<()>>;

/// Where a running call sends its events; implemented by the host.
#[sabi_trait]
pub trait SinkAbi: Send + Sync {
    /// Delivers one `Event` as JSON.
    fn emit(&self, event: RStr<'_>);
    /// Whether the host wants this call to stop.
    #[sabi(last_prefix_field)]
    fn is_cancelled(&self) -> bool;
    /// Asks the host's shared rate limiter for one more upstream request
    /// within this call (say, polling a video job): 0 when granted now, else
    /// milliseconds to wait before asking again. Added in 0.1.2; a host
    /// built before has no such entry, and the default grants at once.
    fn permit(&self) -> u64 {
        0
    }
}

/// Owned sink trait object.
pub type SinkBox = SinkAbi_TO<'static, RBox<()>>;
