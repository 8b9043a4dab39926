//! Errors that point into the file: its line, column and dotted key.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {key}{message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        /// "key `rule[0].limit`: " or empty when no key applies.
        key: KeyLabel,
        message: String,
    },
}

#[derive(Debug, Default)]
pub struct KeyLabel(pub Option<String>);

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(k) => write!(f, "key `{k}`: "),
            None => Ok(()),
        }
    }
}

/// Line and column (1-based) of a byte offset.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

/// The dotted key at `offset`: the nearest table header above it plus the
/// key on its line, with array tables numbered (`rule[1].limit`).
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let (line_no, _) = position(text, offset);
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no - 1)?;
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let mut table: Option<String> = None;
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for l in &lines[..line_no.saturating_sub(1).min(lines.len())] {
        let t = l.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = Some(format!("{}[{}]", name.trim(), *n));
            *n += 1;
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            let name = name.trim();
            // `[rule.match]` belongs to the latest `[[rule]]`.
            table = match name.split_once('.') {
                Some((head, tail)) if counts.contains_key(head) => {
                    Some(format!("{head}[{}].{tail}", counts[head] - 1))
                }
                _ => Some(name.to_string()),
            };
        }
    }
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(t), None) => Some(t),
        (None, None) => None,
    }
}
