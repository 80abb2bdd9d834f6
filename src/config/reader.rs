//! Typed access to properties: numbers, sizes and durations with Pulsar's rules, errors that
//! name the file, the line, the key and what was expected.

use std::time::Duration;

use super::{ConfigError, Properties, Property};

/// Typed access to properties; an empty value means "not set", as in Pulsar.
pub(super) struct Reader<'a> {
    pub(super) props: &'a Properties,
    pub(super) origin: &'a str,
}

impl Reader<'_> {
    pub(super) fn raw(&self, key: &'static str) -> Option<&Property> {
        self.props.get(key).filter(|p| !p.value.trim().is_empty())
    }

    pub(super) fn invalid(
        &self,
        key: &'static str,
        prop: &Property,
        expected: &'static str,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.origin.to_string(),
            line: prop.line,
            key,
            value: prop.value.clone(),
            expected,
        }
    }

    pub(super) fn positive_integer(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let Some(prop) = self.raw(key) else {
            return Ok(None);
        };
        match prop.value.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(self.invalid(key, prop, "expected a whole number greater than 0")),
        }
    }

    /// A whole number that may be negative (Pulsar's "-1 disables").
    pub(super) fn integer(&self, key: &'static str) -> Result<Option<i64>, ConfigError> {
        let Some(prop) = self.raw(key) else {
            return Ok(None);
        };
        prop.value
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| self.invalid(key, prop, "expected a whole number"))
    }

    fn non_negative_number(
        &self,
        key: &'static str,
        expected: &'static str,
    ) -> Result<Option<(f64, &Property)>, ConfigError> {
        let Some(prop) = self.raw(key) else {
            return Ok(None);
        };
        match prop.value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Ok(Some((n, prop))),
            _ => Err(self.invalid(key, prop, expected)),
        }
    }

    /// Minutes; fractions are a tierfs extension (Pulsar takes whole minutes).
    pub(super) fn minutes(&self, key: &'static str) -> Result<Option<Duration>, ConfigError> {
        const EXPECTED: &str = "expected a number of minutes, 0 or more";
        match self.non_negative_number(key, EXPECTED)? {
            None => Ok(None),
            Some((n, prop)) => Duration::try_from_secs_f64(n * 60.0)
                .map(Some)
                .map_err(|_| self.invalid(key, prop, EXPECTED)),
        }
    }

    /// Megabytes (MiB, as Pulsar counts them); fractions are a tierfs extension.
    pub(super) fn megabytes(&self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        const EXPECTED: &str = "expected a number of megabytes greater than 0";
        match self.non_negative_number(key, EXPECTED)? {
            None => Ok(None),
            Some((n, prop)) => {
                let bytes = (n * 1024.0 * 1024.0).floor();
                if bytes < 1.0 || bytes > u64::MAX as f64 {
                    Err(self.invalid(key, prop, EXPECTED))
                } else {
                    Ok(Some(bytes as u64))
                }
            }
        }
    }

    /// A string value, trimmed; `None` when unset or empty.
    pub(super) fn text(&self, key: &'static str) -> Option<(&str, &Property)> {
        self.raw(key).map(|p| (p.value.trim(), p))
    }

    /// The first of several keys that is set (current name first, legacy aliases after).
    pub(super) fn first_of(&self, keys: &[&'static str]) -> Option<&'static str> {
        keys.iter().copied().find(|k| self.raw(k).is_some())
    }
}
