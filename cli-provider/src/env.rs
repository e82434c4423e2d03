//! The environment a CLI runs with: not the daemon's whole environment (it
//! holds the user's Poe key and whatever else the daemon was started with),
//! but an explicit list: what any program needs to run as the user, the
//! variables the CLI itself reads (by prefix), and names the user adds.

use std::ffi::OsString;

/// Passed to every CLI: running as the user, locale, temp files, proxies
/// and extra CA certificates. A trailing `*` matches a prefix.
pub const BASE: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TERM",
    "XDG_*",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
];

/// Whether `name` matches one of `patterns` (exact, or a prefix ending `*`).
pub fn matches(name: &str, patterns: &[&str]) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == *p,
    })
}

/// The names in a comma- or space-separated list such as a `*_PASS_ENV`
/// setting.
pub fn names(list: &str) -> Vec<String> {
    list.split([',', ' '])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The variables of `from` that [`BASE`], `patterns` or `extra` let
/// through.
pub fn filtered(
    from: impl IntoIterator<Item = (OsString, OsString)>,
    patterns: &[&str],
    extra: &[String],
) -> Vec<(OsString, OsString)> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    from.into_iter()
        .filter(|(name, _)| {
            name.to_str().is_some_and(|name| {
                matches(name, BASE) || matches(name, patterns) || matches(name, &extra)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_variables_pass() {
        let from = [
            ("PATH", "/bin"),
            ("POE_API_KEY", "secret"),
            ("LC_ALL", "C"),
            ("ANTHROPIC_API_KEY", "k"),
            ("MY_FLAG", "1"),
            ("OTHER", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let names: Vec<String> = filtered(from, &["ANTHROPIC_*"], &["MY_FLAG".into()])
            .into_iter()
            .map(|(k, _)| k.into_string().unwrap())
            .collect();
        assert_eq!(names, ["PATH", "LC_ALL", "ANTHROPIC_API_KEY", "MY_FLAG"]);
        assert_eq!(super::names("A, B  C"), ["A", "B", "C"]);
    }
}
