//! Heartbeat's time values: `2` (seconds), `0.5`, `200ms`, `500us`, `1.5s`.

use std::time::Duration;

/// Parses a Heartbeat time value.
///
/// Heartbeat (`get_msec`) reads a decimal number followed by nothing (seconds), `ms`/`msec` or
/// `us`/`usec`, and rounds to milliseconds; `s`/`sec` is accepted too, as the modern form. The
/// error says what was expected.
pub fn parse_time(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(format!(
            "expected a time such as 2 (seconds), 0.5, 200ms or 500us, found {text:?}"
        ));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a number of seconds, found {number:?}"))?;
    let micros_per_unit = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" => 1_000_000.0,
        "ms" | "msec" => 1_000.0,
        "us" | "usec" => 1.0,
        other => {
            return Err(format!(
                "unknown time unit {other:?} (expected none for seconds, ms or us)"
            ))
        }
    };
    let micros = value * micros_per_unit;
    // Heartbeat rounds to whole milliseconds; so do we, so that both read a file alike.
    let millis = (micros / 1000.0 + 0.5).floor();
    if !millis.is_finite() || millis > (u32::MAX as f64) {
        return Err(format!("time {text:?} is too large"));
    }
    Ok(Duration::from_millis(millis as u64))
}

/// Writes a duration the way ha.cf and ha.toml both read it back.
pub fn format_time(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_documented_examples() {
        for (text, millis) in [
            ("1", 1000),
            ("1000ms", 1000),
            ("1000000us", 1000),
            ("0.1", 100),
            ("100ms", 100),
            ("100000us", 100),
            ("0.001", 1),
            ("1ms", 1),
            ("1000us", 1),
            ("499us", 0),
            ("501us", 1),
            ("200ms", 200),
            ("1.5s", 1500),
            ("30", 30_000),
        ] {
            assert_eq!(parse_time(text), Ok(Duration::from_millis(millis)), "{text}");
        }
    }

    #[test]
    fn rejects_what_heartbeat_rejects() {
        for text in ["", "ms", "abc", "1min", "-1", "1.2.3", "."] {
            assert!(parse_time(text).is_err(), "{text}");
        }
    }

    #[test]
    fn format_round_trips() {
        for millis in [0, 1, 200, 1000, 1500, 30_000] {
            let duration = Duration::from_millis(millis);
            assert_eq!(parse_time(&format_time(duration)), Ok(duration));
        }
    }
}
