//! Poe's rate-limit signals: the wait hint of a 429 and the request budget
//! headers every answer carries.
//!
//! <https://creator.poe.com/api-reference/rate-limits> documents 500 requests
//! per minute and the headers `x-ratelimit-limit-requests`,
//! `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests` ("time
//! in seconds until the rate limit window resets"; an older version of the
//! compatibility page called it a timestamp, so both are accepted).
//! <https://creator.poe.com/api-reference/errors>: a 429 carries `Retry-After`
//! (seconds). HTTP dates and OpenAI's `retry-after-ms` are accepted too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use poe_plugin_api::{Event, Sink};
use reqwest::header::HeaderMap;

/// Longest wait we pass on as a retry hint. Poe's window is a minute; a
/// bigger number is a broken header, and the host should not sleep on it.
const MAX_HINT_MS: u64 = 60 * 60 * 1000;

/// How long the upstream asked us to wait (capped at an hour):
/// `retry-after-ms`, `Retry-After` (seconds or HTTP date), else
/// `x-ratelimit-reset-requests`.
pub(crate) fn retry_after_ms(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    hint_ms(headers, now).map(|ms| ms.min(MAX_HINT_MS))
}

fn hint_ms(headers: &HeaderMap, now: SystemTime) -> Option<u64> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(ms.ceil() as u64);
    }
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some((secs * 1000.0).ceil() as u64);
            }
        } else if let Ok(at) = httpdate::parse_http_date(value) {
            return Some(millis_until(at, now));
        }
    }
    header("x-ratelimit-reset-requests").and_then(|v| parse_reset(v, now))
}

/// Poe's `x-ratelimit-*-requests` headers as an event for the host's shared
/// limiter; `None` when the response carries none of them.
pub(crate) fn rate_limit_event(headers: &HeaderMap, now: SystemTime) -> Option<Event> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
    let limit = number("x-ratelimit-limit-requests");
    let remaining = number("x-ratelimit-remaining-requests");
    let reset_ms = header("x-ratelimit-reset-requests").and_then(|v| parse_reset(v, now));
    (limit.is_some() || remaining.is_some() || reset_ms.is_some()).then_some(Event::RateLimit {
        limit,
        remaining,
        reset_ms,
    })
}

/// Emits [`rate_limit_event`] for a response, if it has one.
pub(crate) fn report(sink: &Sink, headers: &HeaderMap) {
    if let Some(event) = rate_limit_event(headers, SystemTime::now()) {
        sink.emit(&event);
    }
}

fn millis_until(at: SystemTime, now: SystemTime) -> u64 {
    at.duration_since(now)
        .map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

/// Parses a reset value: plain seconds (`1`, `0.5`), an OpenAI-style duration
/// (`20ms`, `1s`, `6m0s`, `1h2m`), or (since one version of Poe's page calls
/// it a timestamp) Unix epoch seconds.
fn parse_reset(value: &str, now: SystemTime) -> Option<u64> {
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        // Anything past 2001-09-09 in seconds is a timestamp, not a wait.
        if secs >= 1_000_000_000.0 {
            // Absurd values (far past any real reset) are ignored, not trusted.
            let at = Duration::try_from_secs_f64(secs)
                .ok()
                .and_then(|d| UNIX_EPOCH.checked_add(d))?;
            return Some(millis_until(at, now));
        }
        return Some((secs * 1000.0).ceil() as u64);
    }
    let mut total_ms = 0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            _ => return None,
        };
        total_ms += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total_ms.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    #[test]
    fn retry_after_seconds_date_and_reset() {
        let now = SystemTime::now();
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "2")]), now),
            Some(2000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "0.25")]), now),
            Some(250)
        );
        let later = now + Duration::from_secs(30);
        let date = httpdate::fmt_http_date(later);
        let ms = retry_after_ms(&headers(&[("retry-after", &date)]), now).unwrap();
        assert!((29_000..=30_000).contains(&ms), "{ms}");
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", &past)]), now),
            Some(0)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset-requests", "1")]), now),
            Some(1000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset-requests", "6m0s")]), now),
            Some(360_000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset-requests", "20ms")]), now),
            Some(20)
        );
        let epoch = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .saturating_add(10);
        let ms = retry_after_ms(
            &headers(&[("x-ratelimit-reset-requests", &epoch.to_string())]),
            now,
        )
        .unwrap();
        assert!((9_000..=10_000).contains(&ms), "{ms}");
        // Retry-After wins over the reset header.
        assert_eq!(
            retry_after_ms(
                &headers(&[("retry-after", "3"), ("x-ratelimit-reset-requests", "9")]),
                now
            ),
            Some(3000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(retry_after_ms(&HeaderMap::new(), now), None);
    }

    #[test]
    fn rate_limit_headers_become_an_event() {
        let now = SystemTime::now();
        let event = rate_limit_event(
            &headers(&[
                ("x-ratelimit-limit-requests", "500"),
                ("x-ratelimit-remaining-requests", "499"),
                ("x-ratelimit-reset-requests", "1"),
            ]),
            now,
        );
        assert_eq!(
            event,
            Some(Event::RateLimit {
                limit: Some(500),
                remaining: Some(499),
                reset_ms: Some(1000)
            })
        );
        assert_eq!(rate_limit_event(&HeaderMap::new(), now), None);
    }

    #[test]
    fn absurd_reset_values_are_ignored_without_panicking() {
        let now = SystemTime::now();
        for v in [
            "1e300",
            "99999999999999999999999",
            "-1",
            "NaN",
            "inf",
            "5x",
            "m",
        ] {
            let _ = retry_after_ms(&headers(&[("x-ratelimit-reset-requests", v)]), now);
            let _ = retry_after_ms(&headers(&[("retry-after", v)]), now);
        }
        assert_eq!(
            retry_after_ms(&headers(&[("x-ratelimit-reset-requests", "1e300")]), now),
            None
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "1e300")]), now),
            Some(MAX_HINT_MS)
        );
    }
}
