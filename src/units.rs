//! Sizes and durations as pulsar-admin writes them: `10M`, `16G`, `100K`, `4096` (powers of
//! 1024, any case); `30s`, `10m`, `5h`, `3d`, `2w`, `1y` (seconds when bare), and `500ms`.

/// Bytes in a size string; negative values pass (Pulsar's "-1 disables").
pub fn parse_size(text: &str) -> Result<i64, String> {
    let invalid =
        || format!("Invalid size '{text}'. Valid formats are: (4096, 100K, 10M, 16G, 2T)");
    let trimmed = text.trim();
    let (number, shift) = match trimmed.chars().last() {
        Some('k' | 'K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('m' | 'M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('g' | 'G') => (&trimmed[..trimmed.len() - 1], 30),
        Some('t' | 'T') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let value: i64 = number.parse().map_err(|_| invalid())?;
    value.checked_mul(1i64 << shift).ok_or_else(invalid)
}

/// A size that must not be negative, for command-line flags.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let value = parse_size(text)?;
    u64::try_from(value).map_err(|_| format!("'{text}' is negative"))
}

/// Milliseconds in a relative time string.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    if let Some(ms) = lower.strip_suffix("ms") {
        return ms.parse().map_err(|_| format!("Invalid time '{text}'"));
    }
    let last = lower
        .chars()
        .last()
        .ok_or_else(|| "the time cannot be empty".to_string())?;
    let (number, seconds) = match last {
        's' => (&lower[..lower.len() - 1], 1),
        'm' => (&lower[..lower.len() - 1], 60),
        'h' => (&lower[..lower.len() - 1], 3600),
        'd' => (&lower[..lower.len() - 1], 86_400),
        'w' => (&lower[..lower.len() - 1], 7 * 86_400),
        'y' => (&lower[..lower.len() - 1], 365 * 86_400),
        c if c.is_ascii_digit() => (lower.as_str(), 1),
        c => return Err(format!("Invalid time unit '{c}'")),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("Invalid time '{text}'"))?;
    value
        .checked_mul(seconds * 1000)
        .ok_or_else(|| format!("Invalid time '{text}'"))
}

/// A duration flag: a relative time string.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    parse_duration_ms(text).map(std::time::Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_as_pulsar_admin_does() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("100k").unwrap(), 100 << 10);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(
            parse_size("10MB")
                .unwrap_err()
                .contains("Invalid size '10MB'")
        );
        assert!(parse_bytes("-1").is_err());
        assert_eq!(parse_duration_ms("10m").unwrap(), 600_000);
        assert_eq!(parse_duration_ms("2w").unwrap(), 14 * 86_400_000);
        assert_eq!(parse_duration_ms("30").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("500ms").unwrap(), 500);
        assert!(parse_duration_ms("ms").is_err());
        assert!(
            parse_duration_ms("5x")
                .unwrap_err()
                .contains("Invalid time unit 'x'")
        );
    }
}
