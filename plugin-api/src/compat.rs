//! The compatibility promise between the host and plugins.
//!
//! A plugin built against plugin-api `A` loads into a host built against `H`
//! when they share the major version (or, while the major is 0, the minor
//! version), whichever of the two is newer. Within that range a release may
//! only add optional fields, enum variants and functions appended to the
//! ABI's prefix types; removing or changing anything is a new major.
//!
//! One exception, from before this was understood: abi_stable refuses a
//! library whose vtables have fewer entries than the host's, and 0.1.2
//! appended `SinkAbi::permit`, so plugins built for 0.1.0 and 0.1.1 do not
//! load into later hosts ([`check_loadable`] says so). Since then new
//! behaviour travels in-band on the existing functions (see `start`), never
//! as a new vtable entry.

use semver::Version;

/// Checks a plugin's API version against the host's; `Err` carries a
/// one-line reason.
pub fn check(host: &str, plugin: &str) -> Result<(), String> {
    let host_v = Version::parse(host).map_err(|e| format!("bad host API version {host}: {e}"))?;
    let plugin_v = Version::parse(plugin)
        .map_err(|e| format!("plugin reports unparsable plugin-api version {plugin:?}: {e}"))?;
    let compatible = if host_v.major == 0 || plugin_v.major == 0 {
        host_v.major == plugin_v.major && host_v.minor == plugin_v.minor
    } else {
        host_v.major == plugin_v.major
    };
    if compatible {
        Ok(())
    } else {
        Err(format!(
            "plugin was built for plugin-api {plugin}, incompatible with this host's {host}"
        ))
    }
}

/// The oldest plugin-api whose ABI layout this host's loads (see the
/// module docs).
pub const OLDEST_LOADABLE: &str = "0.1.2";

/// Checks the plugin-api version a library's header names before its layout
/// is checked, so a plugin too old to load gets a one-line reason.
pub fn check_loadable(plugin: &str) -> Result<(), String> {
    let (Ok(plugin_v), Ok(oldest)) = (Version::parse(plugin), Version::parse(OLDEST_LOADABLE))
    else {
        // Unparsable: abi_stable's own check reports it.
        return Ok(());
    };
    if plugin_v.major == oldest.major && plugin_v.minor == oldest.minor && plugin_v < oldest {
        return Err(format!(
            "plugin was built for plugin-api {plugin}, whose ABI this host no longer loads; \
             rebuild it against plugin-api {OLDEST_LOADABLE} or later (same source)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, check_loadable};

    #[test]
    fn plugins_built_before_the_permit_entry_are_refused_in_one_line() {
        let reason = check_loadable("0.1.1").unwrap_err();
        assert!(
            reason.contains("rebuild it against plugin-api 0.1.2"),
            "{reason}"
        );
        assert!(check_loadable("0.1.2").is_ok());
        assert!(check_loadable("0.1.3").is_ok());
        // Other minors are for `check` to judge.
        assert!(check_loadable("0.2.0").is_ok());
    }

    #[test]
    fn same_minor_in_zero_major_is_compatible() {
        assert!(check("0.1.4", "0.1.0").is_ok());
        assert!(check("0.1.0", "0.1.9").is_ok());
    }

    #[test]
    fn different_minor_in_zero_major_is_refused() {
        let err = check("0.2.0", "0.1.0").unwrap_err();
        assert!(err.contains("0.1.0") && err.contains("0.2.0"), "{err}");
    }

    #[test]
    fn major_rules_after_one() {
        assert!(check("1.4.0", "1.0.2").is_ok());
        assert!(check("2.0.0", "1.9.0").is_err());
    }

    #[test]
    fn garbage_version_is_refused() {
        assert!(check("0.1.0", "banana").is_err());
    }
}
