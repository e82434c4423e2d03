//! The compatibility promise between the host and plugins.
//!
//! A plugin built against plugin-api `A` loads into a host built against `H`
//! when they share the major version (or, while the major is 0, the minor
//! version), whichever of the two is newer. Within that range a release may
//! only add optional fields, enum variants and functions appended to the
//! ABI's prefix types; removing or changing anything is a new major.

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

#[cfg(test)]
mod tests {
    use super::check;

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
