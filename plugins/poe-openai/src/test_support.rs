//! Helpers shared by the unit tests of several modules.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// A header map from name/value pairs.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}
