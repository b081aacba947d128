//! Go-style durations (`500ms`, `1m30s`, `1.5s`), so the Go server's files and habits carry over.

use std::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Unit suffixes and their length in nanoseconds; Go accepts both micro signs.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000), // U+00B5 micro sign
    ("μs", 1_000), // U+03BC Greek mu
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3600 * NANOS_PER_SEC),
];

const EXPECTED: &str = "expected a duration like 30s";

/// Parses a Go duration: one or more `<number><unit>` parts, the number possibly
/// fractional. A bare number is refused (is "30" seconds or milliseconds?), except
/// "0", which Go accepts and which means the same in every unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}: {EXPECTED}"));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after) = split_digits(rest);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => split_digits(after),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(format!("invalid duration {s:?}: {EXPECTED}"));
        }
        let unit_end = after
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        if unit.is_empty() {
            return Err(format!("missing unit in duration {s:?}: {EXPECTED}"));
        }
        let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!(
                "unknown unit {unit:?} in duration {s:?}: {EXPECTED} (units: ns, us, ms, s, m, h)"
            ));
        };
        total = part_nanos(whole, fraction, unit_nanos)
            .and_then(|part| total.checked_add(part))
            .filter(|t| *t <= u128::from(u64::MAX))
            .ok_or_else(|| format!("duration {s:?} is out of range"))?;
        rest = after;
    }
    if negative && total > 0 {
        return Err(format!("negative duration {s:?}: {EXPECTED}"));
    }
    // `total` was checked against u64::MAX above.
    Ok(Duration::from_nanos(total as u64))
}

/// Splits the leading ASCII digits off `s`.
fn split_digits(s: &str) -> (&str, &str) {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    s.split_at(end)
}

/// `whole.fraction` units in nanoseconds; None on overflow.
fn part_nanos(whole: &str, fraction: &str, unit_nanos: u128) -> Option<u128> {
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos = whole.checked_mul(unit_nanos)?;
    // Digits past the 18th are below a nanosecond for every unit up to hours.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let scale = 10u128.pow(fraction.len() as u32);
        let digits: u128 = fraction.parse().ok()?;
        nanos = nanos.checked_add(digits * unit_nanos / scale)?;
    }
    Some(nanos)
}

/// Formats like Go's `Duration.String`: `0s`, `500ms`, `1.5s`, `1m30s`, `24h0m0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    match nanos {
        0 => "0s".to_string(),
        1..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{}µs", decimal(nanos, 3)),
        1_000_000..NANOS_PER_SEC => format!("{}ms", decimal(nanos, 6)),
        _ => {
            let secs = nanos / NANOS_PER_SEC;
            let seconds = decimal(nanos % (60 * NANOS_PER_SEC), 9);
            let (minutes, hours) = ((secs / 60) % 60, secs / 3600);
            match (hours, secs / 60) {
                (0, 0) => format!("{seconds}s"),
                (0, _) => format!("{minutes}m{seconds}s"),
                _ => format!("{hours}h{minutes}m{seconds}s"),
            }
        }
    }
}

/// `value / 10^places` as a decimal without trailing zeros.
fn decimal(value: u128, places: u32) -> String {
    let scale = 10u128.pow(places);
    let (whole, fraction) = (value / scale, value % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = places as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("0s", 0),
            ("-0s", 0),
            ("+5s", 5_000 * MS),
            ("500ms", 500 * MS),
            ("10s", 10_000 * MS),
            ("1m30s", 90_000 * MS),
            ("2h", 7_200_000 * MS),
            ("1.5s", 1_500 * MS),
            (".5s", 500 * MS),
            ("1.s", 1_000 * MS),
            ("1h2m3.5s", (3_723_500) * MS),
            ("100ns", 100),
            ("3us", 3_000),
            ("3µs", 3_000),
            ("3μs", 3_000),
            ("1.000000001s", 1_000_000_001),
            (" 30s ", 30_000 * MS),
        ];
        for &(text, nanos) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_nanos(nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        let cases: &[(&str, &str)] = &[
            (
                "30",
                "missing unit in duration \"30\": expected a duration like 30s",
            ),
            ("", "invalid duration \"\": expected a duration like 30s"),
            ("s", "invalid duration \"s\": expected a duration like 30s"),
            (
                ".s",
                "invalid duration \".s\": expected a duration like 30s",
            ),
            (
                "abc",
                "invalid duration \"abc\": expected a duration like 30s",
            ),
            (
                "1m30",
                "missing unit in duration \"1m30\": expected a duration like 30s",
            ),
            (
                "1d",
                "unknown unit \"d\" in duration \"1d\": expected a duration like 30s (units: ns, us, ms, s, m, h)",
            ),
            (
                "-1s",
                "negative duration \"-1s\": expected a duration like 30s",
            ),
            (
                "1 s",
                "unknown unit \" s\" in duration \"1 s\": expected a duration like 30s (units: ns, us, ms, s, m, h)",
            ),
            ("99999999999h", "duration \"99999999999h\" is out of range"),
        ];
        for &(text, message) in cases {
            assert_eq!(parse_duration(text), Err(message.to_string()), "{text}");
        }
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (500 * MS, "500ms"),
            (1_500 * MS, "1.5s"),
            (30_000 * MS, "30s"),
            (90_000 * MS, "1m30s"),
            (3_600_000 * MS, "1h0m0s"),
            (86_400_000 * MS, "24h0m0s"),
            (3_723_500 * MS, "1h2m3.5s"),
        ];
        for &(nanos, text) in cases {
            let d = Duration::from_nanos(nanos);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "round trip of {text}");
        }
    }
}
