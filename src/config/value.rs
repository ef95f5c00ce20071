//! Parsing and showing one option value, the same way for flags, environment and file.
//!
//! # Invariants
//! - `parse_value` never panics on any input; it returns a message that says what was expected.
//! - `show_value(&parse_value(s)?)` parses back to the same value (help prints defaults this way).
//! - Every number option is strictly positive: a zero limit or timeout is always a mistake.
//! - `check_value` holds a value that was never parsed (settings built in code) to the same
//!   rule as `parse_value`.
//!
//! # Implementation
//! One small trait implemented for each field type of [`super::Settings`]. Booleans are the only
//! types that may appear as a bare flag (`--dev`); lists are comma-separated with blanks trimmed.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A type that an option's text can be parsed into.
pub trait ConfigValue: Sized {
    /// `true` when a bare `--flag` (without a value) means "on".
    const IS_FLAG: bool = false;
    /// Parses the text of a flag, environment variable or file value.
    fn parse_value(raw: &str) -> Result<Self, String>;
    /// Renders the value as it would be written on the command line (for help).
    fn show_value(&self) -> String;
    /// The rule `parse_value` enforces, checked on a value that was not parsed (settings
    /// built in code).
    fn check_value(&self) -> Result<(), String> {
        Ok(())
    }
}

fn check_positive(n: u64) -> Result<(), String> {
    if n == 0 {
        return Err("must be greater than zero".to_string());
    }
    Ok(())
}

fn check_not_blank(text: &str, what: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err(format!("expected {what}, got an empty value"));
    }
    Ok(())
}

fn parse_positive(raw: &str) -> Result<u64, String> {
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a positive whole number, got {raw:?}"));
    }
    match digits.parse::<u64>() {
        Ok(0) => Err("must be greater than zero".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("number {raw:?} is too large")),
    }
}

impl ConfigValue for u64 {
    fn parse_value(raw: &str) -> Result<Self, String> {
        parse_positive(raw)
    }
    fn show_value(&self) -> String {
        self.to_string()
    }
    fn check_value(&self) -> Result<(), String> {
        check_positive(*self)
    }
}

impl ConfigValue for u32 {
    fn parse_value(raw: &str) -> Result<Self, String> {
        u32::try_from(parse_positive(raw)?).map_err(|_| format!("number {raw:?} is too large"))
    }
    fn show_value(&self) -> String {
        self.to_string()
    }
    fn check_value(&self) -> Result<(), String> {
        check_positive(u64::from(*self))
    }
}

impl ConfigValue for usize {
    fn parse_value(raw: &str) -> Result<Self, String> {
        usize::try_from(parse_positive(raw)?).map_err(|_| format!("number {raw:?} is too large"))
    }
    fn show_value(&self) -> String {
        self.to_string()
    }
    fn check_value(&self) -> Result<(), String> {
        check_positive(*self as u64)
    }
}

impl ConfigValue for bool {
    const IS_FLAG: bool = true;
    fn parse_value(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(format!("expected true or false, got {raw:?}")),
        }
    }
    fn show_value(&self) -> String {
        self.to_string()
    }
}

/// Text values (issuer, audience, origins) must not be empty: an empty `jwt_issuer` would
/// silently require `iss: ""` instead of turning the check off.
impl ConfigValue for String {
    fn parse_value(raw: &str) -> Result<Self, String> {
        check_not_blank(raw, "a value")?;
        Ok(raw.to_string())
    }
    fn show_value(&self) -> String {
        self.clone()
    }
    fn check_value(&self) -> Result<(), String> {
        check_not_blank(self, "a value")
    }
}

impl ConfigValue for PathBuf {
    fn parse_value(raw: &str) -> Result<Self, String> {
        check_not_blank(raw, "a path")?;
        Ok(PathBuf::from(raw))
    }
    fn show_value(&self) -> String {
        self.display().to_string()
    }
    fn check_value(&self) -> Result<(), String> {
        check_not_blank(&self.to_string_lossy(), "a path")
    }
}

impl ConfigValue for SocketAddr {
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse()
            .map_err(|_| format!("expected IP:PORT such as 127.0.0.1:8080, got {raw:?}"))
    }
    fn show_value(&self) -> String {
        self.to_string()
    }
}

/// Optional values: unset by default, shown as `(none)` in help.
impl<T: ConfigValue> ConfigValue for Option<T> {
    fn parse_value(raw: &str) -> Result<Self, String> {
        T::parse_value(raw).map(Some)
    }
    fn show_value(&self) -> String {
        match self {
            Some(value) => value.show_value(),
            None => "(none)".to_string(),
        }
    }
    fn check_value(&self) -> Result<(), String> {
        self.as_ref().map_or(Ok(()), T::check_value)
    }
}

/// Comma-separated lists; blanks around items are trimmed, empty items are dropped.
impl<T: ConfigValue> ConfigValue for Vec<T> {
    fn parse_value(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(T::parse_value)
            .collect()
    }
    fn show_value(&self) -> String {
        if self.is_empty() {
            return "(none)".to_string();
        }
        let items: Vec<String> = self.iter().map(ConfigValue::show_value).collect();
        items.join(",")
    }
    fn check_value(&self) -> Result<(), String> {
        self.iter().try_for_each(T::check_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_number_zero_or_sign_rejected() {
        assert!(u64::parse_value("0").is_err());
        assert!(u64::parse_value("-5").is_err());
        assert!(u64::parse_value("+5").is_err());
        assert!(u64::parse_value("").is_err());
        assert!(u64::parse_value("99999999999999999999999").is_err());
        assert_eq!(u64::parse_value(" 42 "), Ok(42));
    }

    #[test]
    fn value_bool_words_parse() {
        assert_eq!(bool::parse_value("On"), Ok(true));
        assert_eq!(bool::parse_value("0"), Ok(false));
        assert!(bool::parse_value("maybe").is_err());
    }

    #[test]
    fn value_list_trims_and_drops_empty_items() {
        let list = Vec::<String>::parse_value(" https://a.example , ,https://b.example");
        assert_eq!(
            list,
            Ok(vec![
                "https://a.example".to_string(),
                "https://b.example".to_string()
            ])
        );
        assert_eq!(Vec::<String>::new().show_value(), "(none)");
    }

    #[test]
    fn value_empty_text_rejected() {
        assert!(Option::<String>::parse_value("  ").is_err());
        assert_eq!(
            Option::<String>::parse_value("iss"),
            Ok(Some("iss".to_string()))
        );
    }

    #[test]
    fn value_socket_addr_rejects_host_names() {
        assert!(SocketAddr::parse_value("localhost:80").is_err());
        assert!(SocketAddr::parse_value("[::1]:8080").is_ok());
    }
}
