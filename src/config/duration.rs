//! Durations written as `<integer><unit>`: `300ms`, `5s`, `2m`, `1h`.

use std::time::Duration;

/// Why a duration string was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not `<digits><unit>`, or the unit is not one of `ms`, `s`, `m`, `h`.
    #[error("expected a duration such as 300ms, 5s, 2m or 1h, found `{0}`")]
    Syntax(String),
    /// The number does not fit.
    #[error("duration `{0}` is too large")]
    Overflow(String),
}

/// Parses `300ms`, `5s`, `2m` or `1h` (a decimal integer followed by a unit).
///
/// Units: `ms` milliseconds, `s` seconds, `m` minutes, `h` hours. No spaces, no
/// fractions, no sign.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(text.to_owned());
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(syntax)?;
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(syntax());
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| DurationError::Overflow(text.to_owned()))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(syntax()),
    };
    let millis = number
        .checked_mul(millis_per_unit)
        .ok_or_else(|| DurationError::Overflow(text.to_owned()))?;
    Ok(Duration::from_millis(millis))
}

/// Writes a duration back in the largest unit that represents it exactly.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        "0s".to_owned()
    } else if millis.is_multiple_of(3_600_000) {
        format!("{}h", millis / 3_600_000)
    } else if millis.is_multiple_of(60_000) {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("007s"), Ok(Duration::from_secs(7)));
    }

    #[test]
    fn refuses_malformed() {
        for text in [
            "", "5", "s", "ms", "5 s", " 5s", "5s ", "-5s", "+5s", "1.5s", "5sec", "5S", "5d",
            "1h30m", "5μs",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::Syntax(text.to_owned())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_overflow() {
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn message_names_the_forms() {
        assert_eq!(
            parse_duration("5").map_err(|e| e.to_string()),
            Err("expected a duration such as 300ms, 5s, 2m or 1h, found `5`".to_owned())
        );
    }

    #[test]
    fn formats_in_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_millis(300)), "300ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(15)), "15s");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for text in ["300ms", "5s", "2m", "1h"] {
            assert_eq!(
                parse_duration(text).map(format_duration).as_deref(),
                Ok(text)
            );
        }
    }
}
