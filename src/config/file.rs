//! The config file format: `key = value` lines, `#` comments, blank lines, optional quotes.
//!
//! # Invariants
//! - Parsing never panics; every rejected line yields its 1-based line number and a reason.
//! - A key appears at most once per file (a repeated key is an error, not "last wins").
//! - Only the syntax is checked here; whether a key exists is the caller's table's business.
//!
//! # Implementation
//! Line by line. A value is either quoted — `"..."` with `\"` `\\` `\n` `\t` escapes, or
//! `'...'` taken literally — optionally followed by a `# comment`, or bare: the rest of the line
//! up to a `#` that follows whitespace, trimmed.

/// The largest config file read, so a wrong path (a device, a log) fails fast instead of
/// filling memory; real config files are a few KiB.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// One `key = value` line of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number, for error messages.
    pub line: usize,
    /// The key as written.
    pub key: String,
    /// The value with quotes and escapes resolved.
    pub value: String,
}

/// Parses the text of a config file. `Err((line, reason))` on the first bad line.
pub fn parse_config_text(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries: Vec<Entry> = Vec::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw_line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((key, rest)) = trimmed.split_once('=') else {
            return Err((line, "expected `key = value`".to_string()));
        };
        let key = key.trim();
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err((line, format!("malformed key {key:?}")));
        }
        if entries.iter().any(|e| e.key == key) {
            return Err((line, format!("key {key:?} given twice")));
        }
        let value = parse_value(rest.trim()).map_err(|reason| (line, reason))?;
        entries.push(Entry {
            line,
            key: key.to_string(),
            value,
        });
    }
    Ok(entries)
}

fn parse_value(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    match chars.next() {
        Some('"') => {
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated \"quoted\" value".to_string()),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        other => return Err(format!("unknown escape \\{}", other.unwrap_or(' '))),
                    },
                    Some(c) => value.push(c),
                }
            }
            expect_comment_only(chars.as_str())?;
            Ok(value)
        }
        Some('\'') => {
            let rest = chars.as_str();
            let Some((value, after)) = rest.split_once('\'') else {
                return Err("unterminated 'quoted' value".to_string());
            };
            expect_comment_only(after)?;
            Ok(value.to_string())
        }
        _ => {
            let mut end = text.len();
            let mut previous_blank = false;
            for (at, c) in text.char_indices() {
                if c == '#' && previous_blank {
                    end = at;
                    break;
                }
                previous_blank = c.is_whitespace();
            }
            Ok(text.get(..end).unwrap_or(text).trim().to_string())
        }
    }
}

fn expect_comment_only(after: &str) -> Result<(), String> {
    let after = after.trim();
    if after.is_empty() || after.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected text after quoted value: {after:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Result<String, (usize, String)> {
        parse_config_text(text).map(|mut e| e.pop().map(|e| e.value).unwrap_or_default())
    }

    #[test]
    fn file_comments_and_blanks_skipped() {
        let entries = parse_config_text("# top\n\n  listen = 127.0.0.1:1 # trailing\n");
        assert_eq!(
            entries,
            Ok(vec![Entry {
                line: 3,
                key: "listen".into(),
                value: "127.0.0.1:1".into()
            }])
        );
    }

    #[test]
    fn file_quoted_values_unescape() {
        assert_eq!(
            one(r#"k = "a # b \"c\" \\""#),
            Ok(r#"a # b "c" \"#.to_string())
        );
        assert_eq!(one("k = 'x\\y' # c"), Ok("x\\y".to_string()));
        assert_eq!(one("k = a#b"), Ok("a#b".to_string()));
        assert_eq!(one("k ="), Ok(String::new()));
    }

    #[test]
    fn file_bad_lines_name_line_number() {
        assert_eq!(
            parse_config_text("a = 1\nnonsense")
                .map(|_| ())
                .unwrap_err()
                .0,
            2
        );
        assert_eq!(parse_config_text("k = \"open").unwrap_err().0, 1);
        assert_eq!(parse_config_text("k = 'open").unwrap_err().0, 1);
        assert_eq!(parse_config_text("k = \"x\" y").unwrap_err().0, 1);
        assert_eq!(parse_config_text("k = \"\\q\"").unwrap_err().0, 1);
        assert_eq!(parse_config_text("Bad-Key = 1").unwrap_err().0, 1);
        assert_eq!(parse_config_text("k = 1\n\nk = 2").unwrap_err().0, 3);
        assert_eq!(parse_config_text(" = 1").unwrap_err().0, 1);
    }

    proptest::proptest! {
        #[test]
        fn file_parse_arbitrary_never_panics(text in "\\PC{0,200}") {
            let _ = parse_config_text(&text);
        }

        #[test]
        fn file_quoted_value_round_trips(value in "[ -~]{0,40}") {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            let text = format!("key = \"{escaped}\" # comment\n");
            let entries = parse_config_text(&text);
            proptest::prop_assert_eq!(
                entries.map(|e| e.into_iter().map(|e| e.value).collect::<Vec<_>>()),
                Ok(vec![value])
            );
        }
    }
}
