//! The stable plugin ABI of poe-code and the SDK plugin authors write against.
//!
//! A plugin is a `cdylib` that implements [`Provider`] and calls
//! [`export_provider!`] once. Everything that crosses the library boundary is
//! either an `abi_stable` type with a checked layout or a JSON string of one of
//! the serde types in [`types`], so the ABI stays tiny while the schema evolves
//! by semver (see [`PLUGIN_API_VERSION`] and [`compat`]).
//!
//! The host side (loading a library, opening a provider, invoking it with an
//! event sink) lives in [`host`], so the daemon never touches `abi_stable`
//! directly either.

pub mod abi;
#[cfg(feature = "tokio")]
pub mod cancel;
pub mod chunks;
pub mod compat;
#[cfg(feature = "tokio")]
mod driver;
pub mod host;
#[cfg(feature = "tokio")]
pub mod lanes;
mod sdk;
mod start;
pub mod text;
pub mod types;

#[cfg(feature = "tokio")]
pub use driver::{AsyncProvider, Driver};
pub use sdk::{Provider, Sink};
pub use types::*;

/// The version of this crate, which is the version of the plugin API.
///
/// The host accepts a plugin whose API version is semver-compatible with its
/// own (same major, or same minor while the major is 0); see [`compat`].
pub const PLUGIN_API_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod __private {
    //! Items used by [`export_provider!`](crate::export_provider); not public API.
    pub use crate::abi::PluginModRef;
    pub use crate::sdk::root_module;
    #[cfg(feature = "tokio")]
    pub use crate::sdk::root_module_async;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, IntoRootModuleResult, LibHeader,
        RootModuleResult,
    };
    pub use abi_stable::std_types::RStr;
}

/// Exports a [`Provider`] implementation as this library's plugin root module.
///
/// Call it exactly once, at the crate root of a `cdylib`:
///
/// ```ignore
/// poe_plugin_api::export_provider!(MyProvider);
/// ```
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        $crate::__export_provider!($provider, $crate::PLUGIN_API_VERSION);
    };
}

/// Exports an [`AsyncProvider`] (feature `tokio`) as this library's plugin
/// root module; its calls run on a runtime of its own and hold no host
/// thread while in flight.
///
/// ```ignore
/// poe_plugin_api::export_async_provider!(MyProvider);
/// ```
#[cfg(feature = "tokio")]
#[macro_export]
macro_rules! export_async_provider {
    ($provider:ty) => {
        $crate::__export_root!(
            $crate::__private::root_module_async::<$provider>,
            $crate::PLUGIN_API_VERSION
        );
    };
}

/// `export_provider!` with the reported plugin-api version overridden; only
/// for tests of the host's version rule. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_provider {
    ($provider:ty, $api_version:expr) => {
        $crate::__export_root!($crate::__private::root_module::<$provider>, $api_version);
    };
}

/// Exports the root module `$root(api_version)` builds. Not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_root {
    ($root:expr, $api_version:expr) => {
        // Mirrors what `#[abi_stable::export_root_module]` generates, with paths
        // through this crate so plugin authors need no abi_stable dependency.
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __poe_api_version() -> $crate::__private::RStr<'static> {
                $crate::__private::RStr::from_str($api_version)
            }
            fn __poe_root_module() -> $crate::__private::PluginModRef {
                ($root)(__poe_api_version)
            }
            extern "C" fn __poe_erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__poe_root_module)
            }
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModRef>(
                    __poe_erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn loader_symbol_name_matches_abi_stable() {
        // export_provider! hard-codes the symbol; this keeps it honest.
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
    }
}
