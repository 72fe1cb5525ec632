//! `Date:` (RFC 5322 §3.3) → RFC 3339 in UTC, or nothing.
//!
//! Lenient where mail is (a missing day name or seconds, two-digit years,
//! obsolete zone names, a trailing comment), strict where a wrong answer
//! would be worse than none: every field must be present and in range, or
//! the date is left out.

/// `2026-12-06T21:08:04Z` for a date field value, `None` when it is not a
/// complete, valid date.
pub(super) fn rfc3339_utc(value: &str) -> Option<String> {
    unix_to_rfc3339(unix_seconds(value)?)
}

/// `2026-12-06T21:08:04Z` for seconds since the Unix epoch (years 0–9999).
pub fn unix_to_rfc3339(seconds: i64) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let time = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    (0..=9999).contains(&year).then(|| {
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            time / 3600,
            time % 3600 / 60,
            time % 60
        )
    })
}

/// Seconds since the Unix epoch of `[day-name ","] day month year hh:mm[:ss] [zone]`.
fn unix_seconds(value: &str) -> Option<i64> {
    // A trailing comment (`(CET)`) says nothing the zone does not.
    let value = value.split('(').next().unwrap_or(value);
    let mut tokens = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|token| !token.is_empty())
        .peekable();
    if tokens
        .peek()
        .is_some_and(|token| token.chars().all(|c| c.is_ascii_alphabetic()))
    {
        tokens.next();
    }
    let day: i64 = number(tokens.next()?, 1, 31)?;
    let month = month(tokens.next()?)?;
    let year = match tokens.next()? {
        two if two.len() == 2 => {
            number(two, 0, 99).map(|y| if y < 50 { 2000 + y } else { 1900 + y })?
        }
        three if three.len() == 3 => number(three, 0, 999).map(|y| 1900 + y)?,
        four => number(four, 1900, 9999)?,
    };
    let mut clock = tokens.next()?.split(':');
    let hour = number(clock.next()?, 0, 23)?;
    let minute = number(clock.next()?, 0, 59)?;
    let second = clock.next().map_or(Some(0), |s| number(s, 0, 60))?;
    if clock.next().is_some() || day > days_in_month(year, month) {
        return None;
    }
    let offset = tokens.next().map_or(Some(0), zone_offset_minutes)?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset * 60)
}

fn number(token: &str, min: i64, max: i64) -> Option<i64> {
    if token.is_empty() || token.len() > 4 || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok().filter(|n| (min..=max).contains(n))
}

fn month(token: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let prefix = token.get(..3)?;
    MONTHS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(prefix))
        .and_then(|index| i64::try_from(index + 1).ok())
}

/// `+hhmm`/`-hhmm`, or an obsolete name (RFC 5322 §4.3; military zones
/// other than `Z` are taken as `+0000`, as the RFC advises).
fn zone_offset_minutes(token: &str) -> Option<i64> {
    if let Some(sign) = token
        .strip_prefix('+')
        .map(|_| 1)
        .or(token.strip_prefix('-').map(|_| -1))
    {
        let digits = &token[1..];
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours = number(&digits[..2], 0, 23)?;
        let minutes = number(&digits[2..], 0, 59)?;
        return Some(sign * (hours * 60 + minutes));
    }
    let hours = match token.to_ascii_uppercase().as_str() {
        "UT" | "UTC" | "GMT" | "Z" => 0,
        "EDT" => -4,
        "EST" | "CDT" => -5,
        "CST" | "MDT" => -6,
        "MST" | "PDT" => -7,
        "PST" => -8,
        military if military.len() == 1 && military.bytes().all(|b| b.is_ascii_alphabetic()) => 0,
        _ => return None,
    };
    Some(hours * 60)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        let cases = [
            (
                "Sun, 25 Sep 2016 18:36:33 -0400",
                Some("2016-09-25T22:36:33Z"),
            ),
            (
                "Fri, 01 Jan 2100 11:12:13 +0000",
                Some("2100-01-01T11:12:13Z"),
            ),
            ("1 Mar 2024 00:30 +0100", Some("2024-02-29T23:30:00Z")),
            ("Mon, 6 Dec 2026 21:08:04 GMT", Some("2026-12-06T21:08:04Z")),
            (
                "Thu, 13 Feb 69 23:32:54 -0330 (Newfoundland)",
                Some("1969-02-14T03:02:54Z"),
            ),
            ("06 Dec 2026 21:08:04 PST", Some("2026-12-07T05:08:04Z")),
            ("6 Dec 2026 21:08:04", Some("2026-12-06T21:08:04Z")),
            ("30 Feb 2024 10:00:00 +0000", None),
            ("6 Dec 2026", None),
            ("6 Foo 2026 10:00 +0000", None),
            ("6 Dec 2026 24:00 +0000", None),
            ("6 Dec 2026 10:00 +9999", None),
            ("yesterday", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(rfc3339_utc(value).as_deref(), expected, "{value:?}");
        }
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [-719_468, -1, 0, 1, 11_016, 19_782, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }
}
