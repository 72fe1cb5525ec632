//! `Retry-After` (RFC 9110 §10.2.3) on a `429` or `503`: how long the
//! consumer asks to be left alone before the next attempt.

use std::time::{Duration, SystemTime};

/// The longest wait honoured; a longer one is cut to this, so a consumer's
/// slip (`Retry-After: 86400`) cannot park spooled mail for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The wait a `Retry-After` value received at `now` asks for: delta-seconds
/// (`120`) or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`, and the two
/// obsolete forms RFC 9110 asks recipients to accept). A date in the past
/// asks for no wait; anything longer than [`MAX_RETRY_AFTER`] is cut to it.
/// `None` for a value that is neither (it is ignored).
pub fn parse_retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let wait = if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        // More digits than a u64 holds is still "very long".
        Duration::from_secs(text.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(text).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Option<u64> {
        // 1994-11-06T08:49:30Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_770);
        parse_retry_after(value.as_bytes(), now).map(|wait| wait.as_secs())
    }

    #[test]
    fn delta_seconds() {
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse("1"), Some(1));
        assert_eq!(parse(" 120 "), Some(120));
        assert_eq!(parse("3600"), Some(3600));
        assert_eq!(parse("3601"), Some(3600), "capped");
        assert_eq!(parse("99999999999999999999999999"), Some(3600), "capped");
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(7));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:37 GMT"), Some(7));
        assert_eq!(parse("Sun Nov  6 08:49:37 1994"), Some(7));
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:30 GMT"), Some(0));
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT"), Some(0), "past");
        assert_eq!(parse("Mon, 07 Nov 1994 08:49:30 GMT"), Some(3600), "capped");
    }

    #[test]
    fn garbage_is_ignored() {
        for value in [
            "",
            " ",
            "-1",
            "1.5",
            "+5",
            "5s",
            "1e3",
            "soon",
            "0x10",
            "Sun, 06 Nov 1994 25:00:00 GMT",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "2026-12-07T04:00:00Z",
        ] {
            assert_eq!(parse(value), None, "{value:?}");
        }
        let now = SystemTime::UNIX_EPOCH;
        assert_eq!(parse_retry_after(b"\xff1", now), None);
    }
}
