//! Humane durations for settings measured in hours or days
//! (`MAIL_LASER_SPOOL_MAX_AGE=72h`). Small enough not to need a crate: one or
//! more `<integer><unit>` groups, units `s`, `m`, `h`, `d`, so `90s`, `30m`,
//! `72h`, `3d` and `1h30m` all read as an operator would expect.

use std::time::Duration;

/// What a malformed value is told it should look like.
pub const EXPECTED: &str = "a duration such as 90s, 30m, 72h or 3d";

/// Why a value is not a humane duration; its text says what is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("{EXPECTED}")]
    Malformed,
    #[error("{EXPECTED} (this one is too long)")]
    TooLong,
    #[error("{EXPECTED}, longer than zero")]
    Zero,
}

/// Parses a humane duration. A bare number is refused rather than guessed:
/// `72` could mean seconds or hours, and the wrong guess dead-letters mail.
///
/// # Errors
/// The value is empty, has a number without a unit, an unknown unit,
/// overflows, or is zero.
pub fn parse(value: &str) -> Result<Duration, DurationError> {
    let value = value.trim();
    let mut total = Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err(DurationError::Malformed);
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let number: u64 = number.parse().map_err(|_| DurationError::Malformed)?;
        let seconds = match unit.trim() {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(DurationError::Malformed),
        };
        let part = number
            .checked_mul(seconds)
            .map(Duration::from_secs)
            .ok_or(DurationError::TooLong)?;
        total = total.checked_add(part).ok_or(DurationError::TooLong)?;
        rest = after;
    }
    if total.is_zero() {
        return Err(DurationError::Zero);
    }
    Ok(total)
}

/// The shortest exact way to write `duration` in the same notation, for
/// logs and dead-letter reasons (`72h`, `3d`, `90s`, `1500ms`).
pub fn humane(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if duration.subsec_nanos() != 0 || seconds == 0 {
        return format!("{}ms", duration.as_millis());
    }
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humane_is_exact_and_short() {
        let cases = [
            (Duration::from_secs(259_200), "3d"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::ZERO, "0ms"),
        ];
        for (duration, text) in cases {
            assert_eq!(humane(duration), text);
            if !duration.is_zero() && !text.ends_with("ms") {
                assert_eq!(parse(text), Ok(duration));
            }
        }
    }

    #[test]
    fn units_and_combinations() {
        let cases = [
            ("90s", 90),
            ("30m", 1800),
            ("72h", 259_200),
            ("3d", 259_200),
            ("1h30m", 5400),
            (" 2d12h ", 216_000),
            ("1h 30m", 5400),
        ];
        for (text, seconds) in cases {
            assert_eq!(parse(text), Ok(Duration::from_secs(seconds)), "{text}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in ["", "72", "h", "3 days", "1.5h", "-1h", "10x", "0s", "0h0m"] {
            let error = parse(text).unwrap_err().to_string();
            assert!(error.starts_with(EXPECTED), "{text}: {error}");
        }
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse(&format!("{}d", u64::MAX / 2)).is_err());
    }
}
