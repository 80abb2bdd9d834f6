//! Java `.properties` files, as Pulsar's `broker.conf` is written.
//!
//! Owns the syntax only: comments (`#`, `!`), `key=value`, `key: value` and `key value` forms,
//! backslash line continuations and escapes. It keeps the line each key came from, so that
//! validation errors can point at it. What the keys mean is `config`'s business.

use std::collections::BTreeMap;

/// One key's value and the (1-based) line it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub value: String,
    pub line: usize,
}

/// Parsed properties; a key given twice keeps its last value, as in Java.
#[derive(Debug, Default, Clone)]
pub struct Properties {
    entries: BTreeMap<String, Property>,
    duplicates: Vec<(String, usize)>,
}

impl Properties {
    pub fn parse(text: &str) -> Self {
        let mut props = Properties::default();
        let mut lines = text.lines().enumerate();
        while let Some((index, raw)) = lines.next() {
            let first_line = index + 1;
            let mut logical = raw.trim_start().to_string();
            if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
                continue;
            }
            while ends_with_continuation(&logical) {
                logical.pop();
                match lines.next() {
                    Some((_, next)) => logical.push_str(next.trim_start()),
                    None => break,
                }
            }
            let (key, value) = split_key_value(&logical);
            if props.entries.contains_key(&key) {
                props.duplicates.push((key.clone(), first_line));
            }
            props.entries.insert(
                key,
                Property {
                    value,
                    line: first_line,
                },
            );
        }
        props
    }

    pub fn get(&self, key: &str) -> Option<&Property> {
        self.entries.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Keys that were given more than once, with the line of each later occurrence.
    pub fn duplicates(&self) -> &[(String, usize)] {
        &self.duplicates
    }
}

fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

fn split_key_value(line: &str) -> (String, String) {
    let mut key = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    key.push(unescape(next, &mut chars));
                }
            }
            '=' | ':' => {
                return (key, unescape_all(chars.collect::<String>().trim_start()));
            }
            c if c.is_whitespace() => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (key, unescape_all(rest.trim_start()));
            }
            c => key.push(c),
        }
    }
    (key, String::new())
}

fn unescape_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(unescape(next, &mut chars));
            }
        } else {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

fn unescape(c: char, rest: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match c {
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'f' => '\u{c}',
        'u' => {
            let hex: String = (0..4).filter_map(|_| rest.next()).collect();
            u32::from_str_radix(&hex, 16)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or(char::REPLACEMENT_CHARACTER)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_broker_conf_uses() {
        let props = Properties::parse(
            "# comment\n! also a comment\n\nplain=1\nspaced = two words  \ncolon: 3\nwhite 4\n\
             empty=\ncontinued=a,\\\n    b\nescaped\\ key=x\\ty\nunicode=\\u0041\n",
        );
        let value = |k: &str| props.get(k).map(|p| p.value.clone());
        assert_eq!(value("plain").as_deref(), Some("1"));
        assert_eq!(value("spaced").as_deref(), Some("two words"));
        assert_eq!(value("colon").as_deref(), Some("3"));
        assert_eq!(value("white").as_deref(), Some("4"));
        assert_eq!(value("empty").as_deref(), Some(""));
        assert_eq!(value("continued").as_deref(), Some("a,b"));
        assert_eq!(value("escaped key").as_deref(), Some("x\ty"));
        assert_eq!(value("unicode").as_deref(), Some("A"));
        assert_eq!(props.get("plain").unwrap().line, 4);
    }

    #[test]
    fn later_duplicates_win_and_are_reported() {
        let props = Properties::parse("a=1\nb=2\na=3\n");
        assert_eq!(props.get("a").unwrap().value, "3");
        assert_eq!(props.duplicates(), &[("a".to_string(), 3)]);
    }
}
